"""Points in time and sizes as operators type them on the command line."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from dagcore.clock import duration_ms

_AGO = re.compile(r"^\s*(\d+)\s*(second|minute|hour|day|week|month|year)s?\s+ago\s*$", re.IGNORECASE)
_UNIT_MS = {
    "second": 1000,
    "minute": 60_000,
    "hour": 3_600_000,
    "day": 86_400_000,
    "week": 7 * 86_400_000,
    "month": 30 * 86_400_000,
    "year": 365 * 86_400_000,
}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def parse_point_in_time(value: str, *, now: int) -> int:
    """Milliseconds since the epoch of ``30d`` (ago), ``30 days ago``, an ISO date or date-time
    (UTC unless it names a zone) or a bare number of milliseconds. ``ValueError`` otherwise."""
    text = value.strip()
    if re.fullmatch(r"\d{11,}", text):
        return int(text)
    m = _AGO.match(text)
    if m:
        return now - int(m.group(1)) * _UNIT_MS[m.group(2).lower()]
    ago = duration_ms(text) if re.fullmatch(r"\d+\s*[a-z]+", text) else None
    if ago is not None:
        return now - ago
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: use 30d, '30 days ago', 2026-01-31, 2026-01-31T12:00:00Z "
            "or milliseconds since 1970"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def parse_size(value: str) -> int:
    """Bytes of ``10M``, ``512k``, ``2G``, ``1000`` (powers of 1024, as Synapse's config)."""
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a size: use 1000, 512K, 10M or 2G")
    return int(m.group(1)) * 1024 ** "_kmgt".index((m.group(2) or "_").lower())

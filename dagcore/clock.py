"""Time, explicitly (STYLE.md #12): aware datetimes inside, integer ms at protocol edges."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime


def now_ms() -> int:
    """Milliseconds since the epoch, as in ``origin_server_ts``."""
    return time.time_ns() // 1_000_000


def now() -> datetime:
    return datetime.now(tz=UTC)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# ASCII digits only: \d would also take other scripts' digits.
_DURATION = re.compile(r"^\s*([0-9]+)\s*(ms|s|m|h|d|w|y)?\s*$")
_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}


def duration_ms(value: object) -> int | None:
    """A Synapse-style duration from the config in ms: ``90d``, ``12h``, ``30m``, ``500ms``, a
    number of ms (as text or an int). None when ``value`` is none of these: the caller knows
    which setting it read and says so in its error."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _DURATION.match(str(value))
    if m is None:
        return None
    return int(m.group(1)) * _UNIT_MS[m.group(2) or "ms"]

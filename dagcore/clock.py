"""Time, explicitly (STYLE.md #12): aware datetimes inside, integer ms at protocol edges."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    """Milliseconds since the epoch, as in ``origin_server_ts``."""
    return time.time_ns() // 1_000_000


def now() -> datetime:
    return datetime.now(tz=UTC)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)

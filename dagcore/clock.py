"""Time, explicitly (STYLE.md #12): aware datetimes inside, integer ms at protocol edges.

Every "now" the server reasons with (token expiry, pusher back-off, timestamps) comes
from here, so tests can move it instead of sleeping. With the test-only option
``enable_test_hooks`` on, each process of a homeserver adds an offset that
:func:`advance_test_clock` (``POST /_dagma/test/clock``) keeps in a file beside the
configuration — a file because a homeserver is several processes (Tribune, Celery
workers) that must all see the same time. With the option off (the default) the
offset is 0 and no file is ever looked at.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings

#: The clock offset's file, in the configuration's directory (test hooks only).
TEST_CLOCK_FILE = "test-clock-offset-ms"


def now_ms() -> int:
    """Milliseconds since the epoch, as in ``origin_server_ts``."""
    return time.time_ns() // 1_000_000 + _test_offset_ms()


def now() -> datetime:
    return datetime.now(tz=UTC) + timedelta(milliseconds=_test_offset_ms())


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# --------------------------------------------------------------------------- the test offset


class _OffsetFile:
    """The shared offset, re-read only when the file changed (one ``stat`` per reading)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._value = 0
        self._lock = threading.Lock()

    def read(self) -> int:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return 0
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            # Written whole (os.replace), so never seen half-written.
            self._value, self._stamp = int(self.path.read_text() or 0), stamp
        return self._value

    def advance(self, ms: int) -> int:
        with self._lock:
            total = self.read() + ms
            scratch = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}")
            scratch.write_text(str(total))
            os.replace(scratch, self.path)
            return total


class _TestHooks:
    """Whether this process runs with test hooks, decided at the first reading of the clock
    once the settings exist (a management command without them reads the real time)."""

    def __init__(self) -> None:
        self.resolved = False
        self.offset: _OffsetFile | None = None

    def get(self) -> _OffsetFile | None:
        if not self.resolved and settings.configured:
            config = settings.DAGMA
            if config.enable_test_hooks:
                self.offset = _OffsetFile(config.config_dir / TEST_CLOCK_FILE)
            self.resolved = True
        return self.offset


_hooks = _TestHooks()


def _test_offset_ms() -> int:
    offset = _hooks.get()
    return 0 if offset is None else offset.read()


def advance_test_clock(*, ms: int) -> int:
    """Move this homeserver's clock ``ms`` forward (every process of it); returns the total
    offset. Only with ``enable_test_hooks``: a real server's clock is never moved."""
    if ms < 0:
        raise ValueError("the clock only moves forward")
    offset = _hooks.get()
    if offset is None:
        raise RuntimeError("the clock can only be moved with enable_test_hooks on")
    return offset.advance(ms)


# --------------------------------------------------------------------------- durations

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

"""Log lines on stdout: JSON (one object per line, for Loki/ELK) or text (``log_format``).

Under systemd (``JOURNAL_STREAM`` set: stdout is a journal stream) every line starts with
its syslog priority, ``<3>`` for errors, as sd-daemon(3) describes: journald strips the
prefix and files the line under that priority, so ``journalctl -u 'dagma-*' -p err``
lists the errors. A multi-line record (a traceback in text format) repeats the prefix on
each line, which journald stores as separate entries of the same priority.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import TextIO

#: Attributes a record may carry (``extra=``) that the lines show.
FIELDS = (
    "request_id",
    "room_id",
    "event_id",
    "user_id",
    "destination",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "db_ms",
    "db_queries",
    "requester",
    "audit",
)

#: sd-daemon(3) / syslog(3) priorities by logging level.
PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def under_journald() -> bool:
    """systemd sets ``JOURNAL_STREAM`` for a service whose stdout or stderr is the journal."""
    return bool(os.environ.get("JOURNAL_STREAM"))


def priority_of(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return PRIORITY[level]
    return PRIORITY[logging.DEBUG]


class _DagmaFormatter(logging.Formatter):
    def __init__(self, *, journald: bool | None = None) -> None:
        super().__init__()
        self.journald = under_journald() if journald is None else journald

    def format(self, record: logging.LogRecord) -> str:
        line = self.render(record)
        if not self.journald:
            return line
        prefix = f"<{priority_of(record.levelno)}>"
        return "\n".join(prefix + part for part in line.split("\n"))

    def render(self, record: logging.LogRecord) -> str:
        raise NotImplementedError

    @staticmethod
    def timestamp(record: logging.LogRecord) -> str:
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")


class JsonFormatter(_DagmaFormatter):
    def render(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(_DagmaFormatter):
    """``2026-01-05T10:00:00.123+00:00 INFO dagma.access: GET /_matrix/client/v3/sync 200 ...``;
    fields the message does not already show follow as ``key=value``."""

    def render(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        extras = [
            f"{key}={value}"
            for key in FIELDS
            if (value := getattr(record, key, None)) is not None and record.name != "dagma.access"
        ]
        line = f"{self.timestamp(record)} {record.levelname} {record.name}: {message}"
        if extras:
            line += " [" + " ".join(extras) + "]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class BufferedStreamHandler(logging.StreamHandler[TextIO]):
    """A ``StreamHandler`` that, in a server process (:func:`buffer_log_lines`), writes its lines
    in batches: at once for a warning or worse, else when ``capacity`` lines wait or ``period``
    seconds after the first of them. Elsewhere (management commands, whose ``--json``
    document on stdout comes after their log lines) it writes each line at once.

    Every request writes an access line; written one by one, each is a ``write`` of its
    own, and the thread writing it gives up the interpreter lock for the system call and
    waits to get it back. That was 5-8% of the CPU of a woken ``/sync``
    (bench/results/README.md). Synapse's default log configuration buffers the same way
    (a memory handler flushed every few seconds or at a warning). At exit ``logging``
    flushes what is left; a process killed outright loses at most ``period`` of
    informational lines, never a warning.
    """

    def __init__(self, stream: TextIO | None = None, *, period: float = 0.2, capacity: int = 64) -> None:
        super().__init__(stream)
        self.period = period
        self.capacity = capacity
        #: Off until :func:`buffer_log_lines` (a server process) turns it on.
        self.buffering = False
        self._lines: list[str] = []
        self._first_at = 0.0
        self._last: logging.LogRecord | None = None
        #: The process whose flusher thread runs (a forked worker starts its own).
        self._flusher_pid = 0

    def emit(self, record: logging.LogRecord) -> None:
        # ``Handler.handle`` holds the handler's lock around this call.
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        if not self._lines:
            self._first_at = time.monotonic()
        self._lines.append(line)
        self._last = record
        if not self.buffering or record.levelno >= logging.WARNING or len(self._lines) >= self.capacity:
            self._write()
        elif self._flusher_pid != os.getpid():
            self._flusher_pid = os.getpid()
            threading.Thread(target=self._flush_periodically, name="dagma-log-flush", daemon=True).start()

    def _write(self) -> None:
        lines, self._lines = self._lines, []
        if not lines:
            return
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except Exception:  # as StreamHandler: reported on stderr, never raised to the caller
            if self._last is not None:
                self.handleError(self._last)

    def flush(self) -> None:
        self.acquire()
        try:
            self._write()
        finally:
            self.release()

    def setStream(self, stream: TextIO) -> TextIO | None:
        self.flush()  # what was written so far goes where it was headed
        return super().setStream(stream)

    def _flush_periodically(self) -> None:
        while True:
            self.acquire()
            try:
                due = self._first_at + self.period - time.monotonic() if self._lines else self.period
                if due <= 0:
                    self._write()
                    due = self.period
            finally:
                self.release()
            time.sleep(due)


def buffer_log_lines() -> None:
    """In a server process: the root logger's lines are written in batches (see above)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BufferedStreamHandler):
            handler.buffering = True


def formatter_settings(log_format: str) -> dict[str, str]:
    """The ``LOGGING`` formatter of ``log_format`` (json or text)."""
    return {"()": f"dagma_project.logging.{'Json' if log_format == 'json' else 'Text'}Formatter"}

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
from datetime import UTC, datetime

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


def formatter_settings(log_format: str) -> dict[str, str]:
    """The ``LOGGING`` formatter of ``log_format`` (json or text)."""
    return {"()": f"dagma_project.logging.{'Json' if log_format == 'json' else 'Text'}Formatter"}

"""Commands that print JSON keep stdout for it: log lines (JSON too, on stdout by default)
go to stderr for the rest of the process, so ``... --json | jq`` reads one document."""

from __future__ import annotations

import logging
import sys


def logs_to_stderr() -> None:
    for logger in [logging.getLogger(), *[logging.getLogger(n) for n in logging.root.manager.loggerDict]]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)

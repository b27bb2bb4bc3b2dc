"""``manage.py doctor``: the daily health checks (issue 14), and the federation tester.

Each check is a function in a module of this package returning :class:`Verdict` values
(OK / WARN / FAIL, one line, the command that fixes it); :mod:`dagcore.doctor.run` runs them,
keeps each result (``dagcore.store.operations.insert_check_result``, name ``doctor.<check>``)
and gives the exit code. The management command and the nightly beat job are thin callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK = "ok"
WARN = "warn"
FAIL = "fail"
#: A step that did not apply (the federation tester: no ``.well-known`` asked for a name with a port).
SKIP = "skip"

_RANK = {SKIP: 0, OK: 0, WARN: 1, FAIL: 2}


def worst(statuses: list[str]) -> str:
    """The worst of ``statuses`` (``ok`` for none)."""
    return max(statuses, key=lambda s: _RANK[s], default=OK) if statuses else OK


def exit_code(status: str) -> int:
    """0 / 1 / 2 for ok / warn / fail."""
    return _RANK[status]


@dataclass(frozen=True)
class Verdict:
    """One check's outcome: its name (``disk``), status, one-line summary, fix, details."""

    name: str
    status: str
    summary: str
    #: The command (or setting) that fixes it; empty when there is nothing to fix.
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "fix": self.fix,
            "details": self.details,
        }

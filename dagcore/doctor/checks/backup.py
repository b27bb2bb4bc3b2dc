"""The last verified backup: the newest ``backup_verify`` check result, judged by
``dagcore.actions.backup.backup_verify_age`` (WARN after 35 days or never, FAIL if it failed)."""

from __future__ import annotations

from dagcore.actions.backup import backup_verify_age
from dagcore.clock import now_ms
from dagcore.doctor import Verdict

FIX = "verify a backup: restore it on a scratch database and record it (`manage.py backup verify`)"


def check_backup() -> Verdict:
    status, message = backup_verify_age(now=now_ms())
    return Verdict("backup", status, message, fix="" if status == "ok" else FIX)

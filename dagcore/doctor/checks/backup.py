"""The last verified backup: the newest ``backup_verify`` check result."""

from __future__ import annotations

from dagcore.clock import now_ms
from dagcore.doctor import FAIL, OK, WARN, Verdict
from dagcore.store import operations as ops_store

DAY_MS = 24 * 3600 * 1000
#: A monthly verification plus a few days' slack.
MAX_AGE_DAYS = 35
CHECK_NAME = "backup_verify"
FIX = "verify a backup: restore it on a scratch database and record it (`manage.py backup verify`)"


def check_backup() -> Verdict:
    latest = ops_store.latest_check_results([CHECK_NAME])
    if not latest:
        return Verdict("backup", WARN, "no verified backup on record", fix=FIX)
    result = latest[0]
    age_days = (now_ms() - result.ts) / DAY_MS
    details = {"ts": result.ts, "status": result.status, "summary": result.summary}
    if result.status == "fail":
        return Verdict("backup", FAIL, f"the last backup verification failed: {result.summary[:200]}", fix=FIX,
                       details=details)  # fmt: skip
    if age_days > MAX_AGE_DAYS:
        return Verdict(
            "backup", WARN, f"last verified backup is {age_days:.0f} days old", fix=FIX, details=details
        )
    return Verdict("backup", OK, f"backup verified {age_days:.0f} days ago", details=details)

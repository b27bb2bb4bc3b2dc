"""Run ``doctor``'s checks, keep each result, give the verdict (``manage.py doctor``, the nightly job)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from dagcore.clock import now_ms
from dagcore.doctor import FAIL, Verdict, worst
from dagcore.doctor.checks.backup import check_backup
from dagcore.doctor.checks.certificates import check_certificate, check_signing_key
from dagcore.doctor.checks.database import check_bloat, check_database, check_migrations
from dagcore.doctor.checks.disk import check_disk
from dagcore.doctor.checks.federation import check_destinations, check_federation, check_queues
from dagcore.doctor.checks.processes import check_beat, check_processes, check_redis
from dagcore.doctor.checks.rooms import check_extremities, check_room_versions
from dagcore.store import operations as ops_store

logger = logging.getLogger("dagma.doctor")

#: Check name -> function, in the order they run (the database first: most others need it).
CHECKS: dict[str, Callable[[], Verdict]] = {
    "database": check_database,
    "migrations": check_migrations,
    "redis": check_redis,
    "processes": check_processes,
    "beat": check_beat,
    "disk": check_disk,
    "bloat": check_bloat,
    "extremities": check_extremities,
    "room_versions": check_room_versions,
    "certificate": check_certificate,
    "signing_key": check_signing_key,
    "federation": check_federation,
    "queues": check_queues,
    "destinations": check_destinations,
    "backup": check_backup,
}
#: The name a check's result is kept under (``latest_check_results(prefix=...)``).
RESULT_PREFIX = "doctor."


class UnknownCheck(ValueError):
    pass


def _run_one(name: str, check: Callable[[], Verdict]) -> Verdict:
    try:
        return check()
    except Exception as exc:  # a check that breaks is a FAIL naming it, never a traceback for the operator
        logger.exception("doctor check %s raised", name)
        return Verdict(name, FAIL, f"the check itself failed: {type(exc).__name__}: {str(exc)[:200]}")


def run_doctor(*, only: Sequence[str] | None = None, keep: bool = True) -> list[Verdict]:
    """Run the checks (``only`` these names), keep each as check result ``doctor.<name>``."""
    names = list(only) if only else list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise UnknownCheck(f"unknown check {unknown[0]!r}; known: {', '.join(CHECKS)}")
    verdicts = [_run_one(name, CHECKS[name]) for name in names]
    if keep:
        now = now_ms()
        for v in verdicts:
            try:
                ops_store.insert_check_result(
                    name=RESULT_PREFIX + v.name, status=v.status, summary=v.summary,
                    details={"fix": v.fix, **v.details}, ts=now,
                )  # fmt: skip
            except Exception:  # the database check already says why; the verdicts still print
                logger.warning("could not keep the result of doctor check %s", v.name, exc_info=True)
    return verdicts


def overall(verdicts: Sequence[Verdict]) -> str:
    return worst([v.status for v in verdicts])

"""Beat jobs run once per period by one runner, with their start, end and outcome recorded.

Two beats of one homeserver (two ``celery beat`` processes by mistake, or two in-process
runners: ``serve tribune`` started twice) must not both run a job: before a job is sent (Celery
beat, ``dagma_project.beat.LeasedScheduler``) or run (the in-process runner) the runner claims
the job's lease in the database (``dagcore.store.scheduled_jobs``); a runner that finds it taken,
or finds the job started within the last 90 % of its period, skips it. The lease ends when the
run is recorded finished (Celery: ``task_postrun``), or expires if the runner died.

``manage.py run_job NAME`` runs a job now through the same lease (never beside a running one).
"""

from __future__ import annotations

import importlib
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from dagcore.clock import now_ms
from dagcore.store import scheduled_jobs as store
from dagcore.taskqueue.schedule import BEAT_SCHEDULE

#: A job longer than its lease may be started again by another beat (jobs are idempotent).
MIN_LEASE_MS = 60_000
#: Jobs that legitimately run long.
LEASE_MS_OVERRIDES = {"backup-nightly": 6 * 3600_000, "backup-verify-weekly": 6 * 3600_000}


class UnknownJob(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown job {name!r}; the jobs are: {', '.join(sorted(BEAT_SCHEDULE))}")


@dataclass(frozen=True)
class JobRun:
    name: str
    ran: bool
    ok: bool
    result: Any = None
    message: str = ""


def _task(name: str) -> Any:
    # As dispatch.resolve_task; not imported from there, which imports the runner that imports us.
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def job_for_task(task_name: str) -> str | None:
    """The beat job that runs ``task_name`` (Celery's signals know only the task)."""
    for name, (task, _) in BEAT_SCHEDULE.items():
        if task == task_name:
            return name
    return None


def lease_ms_for(name: str) -> int:
    every_ms = int(BEAT_SCHEDULE[name][1] * 1000)
    return LEASE_MS_OVERRIDES.get(name, max(2 * every_ms, MIN_LEASE_MS))


def claim_due_job(name: str, *, owner: str, manual: bool = False) -> bool:
    """Take job ``name``'s lease if no one runs it and (unless ``manual``) it is due."""
    if name not in BEAT_SCHEDULE:
        raise UnknownJob(name)
    every_ms = int(BEAT_SCHEDULE[name][1] * 1000)
    return store.claim_job_lease(
        name, owner=owner, now=now_ms(), lease_ms=lease_ms_for(name),
        min_interval_ms=0 if manual else every_ms * 9 // 10,
    )  # fmt: skip


def note_job_started(name: str) -> None:
    store.mark_job_started(name, now=now_ms())


def note_job_finished(name: str, *, ok: bool, message: str = "", owner: str | None = None) -> None:
    store.finish_job(name, now=now_ms(), ok=ok, message=message, owner=owner)


def _summary(result: Any) -> str:
    return "" if result is None else str(result)[:500]


def run_job(name: str, *, manual: bool = False, owner: str | None = None) -> JobRun:
    """Run beat job ``name`` here and now if its lease is ours; record the outcome."""
    owner = owner or runner_id()
    if not claim_due_job(name, owner=owner, manual=manual):
        run = store.get_job_run(name)
        holder = f" (held by {run.lease_owner} until {run.lease_until_ts})" if run and run.lease_owner else ""
        return JobRun(
            name, ran=False, ok=True, message=f"not run: another runner has it or it ran recently{holder}"
        )
    return run_claimed_job(name, owner=owner)


def run_claimed_job(name: str, *, owner: str) -> JobRun:
    """Run job ``name`` whose lease ``owner`` holds; record the outcome and free the lease."""
    try:
        result = _task(BEAT_SCHEDULE[name][0]).run()
    except Exception as exc:
        note_job_finished(name, ok=False, message=f"{type(exc).__name__}: {exc}", owner=owner)
        raise
    note_job_finished(name, ok=True, message=_summary(result), owner=owner)
    return JobRun(name, ran=True, ok=True, result=result, message=_summary(result))

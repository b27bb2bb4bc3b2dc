"""Admin jobs: long operator work (a room deletion, a history or media purge) run by a task
and followed by its status (issue 13: "long work: a job with a status page").

A job is a row first (``scheduled``), then a task runs it once (``active``, then
``complete`` or ``failed`` with its result): a lost task message leaves the row
``scheduled``, and the beat re-scan (``do_run_scheduled_jobs``) starts it. The work of a
kind is named in ``JOB_KINDS`` (``kind -> "module.function"``), imported when run, so this
module imports no action it runs; each function is
``fn(*, job: AdminJob, progress: Callable[[dict], None]) -> dict`` (its result counts).
"""

from __future__ import annotations

import importlib
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from dagcore.actions.audit import Actor, record_audit
from dagcore.clock import now_ms
from dagcore.http.errors import MatrixError
from dagcore.models import AdminJob
from dagcore.store import operations as store
from dagcore.taskqueue.dispatch import enqueue

logger = logging.getLogger("dagma.admin_jobs")

JobFunction = Callable[..., dict[str, Any]]

#: ``kind -> "package.module.function"`` of the work. Add a kind here with its function.
JOB_KINDS: dict[str, str] = {
    "purge_history": "dagcore.actions.purge_history.run_purge_history_job",
    "delete_room": "dagcore.actions.room_admin.run_delete_room_job",
    # Synapse's POST /_synapse/admin/v1/user/{userId}/redact
    "redact_user_events": "dagcore.actions.admin_users.run_redact_user_events",
    # The console's "check every room" (helper dag)
    "dag_check": "dagcore.actions.dag_check.run_dag_check_job",
}

#: A ``scheduled`` job older than this with no runner is started again by beat.
STALE_SCHEDULED_MS = 60_000


def do_start_job(*, kind: str, target: str, params: Mapping[str, Any], actor: Actor) -> AdminJob:
    """Record a job and queue its run (after the current transaction commits)."""
    if kind not in JOB_KINDS:
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown job kind {kind!r}")
    job = store.insert_admin_job(
        job_id=secrets.token_urlsafe(12), kind=kind, target=target, params=params, created_by=actor.user_id,
        created_ts=now_ms(),
    )  # fmt: skip
    enqueue("dagcore.tasks.admin_jobs.run_admin_job", job.job_id)
    return job


def do_run_admin_job(job_id: str) -> None:
    """Run one job if nobody else has (idempotent: a second delivery finds it claimed)."""
    if not store.claim_admin_job(job_id, now=now_ms()):
        return
    job = store.get_admin_job(job_id)
    assert job is not None
    module, _, attr = JOB_KINDS[job.kind].rpartition(".")
    work: JobFunction = getattr(importlib.import_module(module), attr)

    def progress(state: Mapping[str, Any]) -> None:
        store.update_admin_job(job_id, progress=dict(state))

    actor = Actor(user_id=job.created_by, via="cli" if job.created_by.startswith("cli:") else "api")
    try:
        result = work(job=job, progress=progress)
    except Exception as exc:
        logger.exception("admin job %s (%s %s) failed", job_id, job.kind, job.target)
        store.update_admin_job(job_id, status="failed", error=str(exc)[:2000], finished_ts=now_ms())
        record_audit(actor=actor, action=f"job:{job.kind}", target=job.target, params=job.params,
                     result="failed", error=str(exc)[:2000])  # fmt: skip
        return
    store.update_admin_job(job_id, status="complete", result=result, finished_ts=now_ms())


def do_run_scheduled_jobs() -> int:
    """Beat: start jobs still ``scheduled`` a minute after they were queued (a lost nudge)."""
    stale = [
        job.job_id
        for job in store.list_admin_jobs(limit=1000)
        if job.status == "scheduled" and job.created_ts < now_ms() - STALE_SCHEDULED_MS
    ]
    for job_id in stale:
        enqueue("dagcore.tasks.admin_jobs.run_admin_job", job_id)
    return len(stale)


def get_job(job_id: str) -> AdminJob:
    job = store.get_admin_job(job_id)
    if job is None:
        raise MatrixError(404, "M_NOT_FOUND", "No such job")
    return job


def list_jobs(*, kind: str | None = None, target: str | None = None, limit: int = 100) -> list[AdminJob]:
    return store.list_admin_jobs(kind=kind, target=target, limit=limit)

"""Each beat job's runs, kept in ``scheduled_job_runs`` (``doctor``'s "beat jobs on time", the
dashboard): when it last started and finished, and how it went.

The in-process runner wraps its beat jobs with :func:`run_recorded`; Celery workers record
the tasks the beat schedule names through the task signals (``dagma_project.celery``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dagcore.clock import now_ms
from dagcore.store import operations as ops_store
from dagcore.taskqueue.schedule import BEAT_SCHEDULE

logger = logging.getLogger("dagma.tasks")

#: Task name -> beat job name (each scheduled task is scheduled once).
JOB_OF_TASK: dict[str, str] = {task: name for name, (task, _every) in BEAT_SCHEDULE.items()}


def record_start(job: str) -> None:
    try:
        ops_store.record_job_start(job, now=now_ms())
    except Exception:  # bookkeeping must never stop the job itself
        logger.warning("could not record the start of beat job %s", job, exc_info=True)


def record_end(job: str, *, ok: bool, message: str = "") -> None:
    try:
        ops_store.record_job_end(job, now=now_ms(), ok=ok, message=message[:1000])
    except Exception:
        logger.warning("could not record the end of beat job %s", job, exc_info=True)


def run_recorded(job: str, func: Callable[[], Any]) -> Any:
    """Run one beat job, recording its start and its outcome."""
    record_start(job)
    try:
        result = func()
    except Exception as exc:
        record_end(job, ok=False, message=f"{type(exc).__name__}: {exc}")
        raise
    record_end(job, ok=True)
    return result

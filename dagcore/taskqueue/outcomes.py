"""What every background task run leaves behind: its metrics and, for a beat job, its run record.

Called by both task runners: Celery's signals in a worker (``dagma_project.celery``) and
the in-process runner (:mod:`dagcore.taskqueue.runner`). A beat job's task (one named in
``BEAT_SCHEDULE``) records its start and end (``dagcore.store.operations``), which the
``dagma_beat_last_success_timestamp_seconds`` gauge and the "job late" alert read.
"""

from __future__ import annotations

import logging

from dagcore.clock import now_ms
from dagcore.observability.metrics import TASK_RUNS, TASK_SECONDS
from dagcore.taskqueue.schedule import BEAT_SCHEDULE

logger = logging.getLogger("dagma.tasks")

#: Task name -> the beat job that runs it.
BEAT_JOB_OF_TASK = {task: job for job, (task, _) in BEAT_SCHEDULE.items()}


def note_task_start(task: str) -> None:
    job = BEAT_JOB_OF_TASK.get(task)
    if job is None:
        return
    from dagcore.store import operations as operations_store  # models: loaded once the app is ready

    try:
        operations_store.record_job_start(job, now=now_ms())
    except Exception:
        # The record is for operators; the job itself must still run.
        logger.exception("recording the start of beat job %s failed", job)


def note_task_end(task: str, *, outcome: str, seconds: float, error: str = "") -> None:
    """``outcome``: ok, failed or retry (a retry is neither a success nor a failure of the job)."""
    TASK_RUNS.labels(task, outcome).inc()
    TASK_SECONDS.labels(task).observe(seconds)
    job = BEAT_JOB_OF_TASK.get(task)
    if job is None or outcome == "retry":
        return
    from dagcore.store import operations as operations_store

    try:
        operations_store.record_job_end(job, now=now_ms(), ok=outcome == "ok", message=error[:500])
    except Exception:
        logger.exception("recording the end of beat job %s failed", job)

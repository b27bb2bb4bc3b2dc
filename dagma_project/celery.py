"""The Celery application: workers (queues federation, media, push, maintenance) and beat.

    celery -A dagma_project worker -Q federation,media,push,maintenance
    celery -A dagma_project beat

The app itself is ``dagma_project.broker`` (serving processes load it to queue tasks); this
module is the workers' entry: a worker process starts like a server process does. Without a
broker (the quick start) the same tasks run in-process (``dagcore.taskqueue.runner``),
including the beat schedule.
"""

from __future__ import annotations

from typing import Any

from celery.signals import task_postrun, task_prerun, worker_process_init

from dagcore.taskqueue.beat_runs import JOB_OF_TASK, record_end, record_start
from dagcore.taskqueue.schedule import BEAT_SCHEDULE
from dagma_project.broker import app
from dagma_project.startup import on_process_start

__all__ = ["BEAT_SCHEDULE", "app"]


@worker_process_init.connect
def _on_worker_start(**_: object) -> None:
    """Workers write too (media, maintenance): register the cross-process notifier publisher."""
    on_process_start()


@task_prerun.connect
def _beat_job_started(sender: Any = None, **_: object) -> None:
    """A task of the beat schedule starts: kept for ``doctor``'s "beat jobs on time"."""
    job = JOB_OF_TASK.get(getattr(sender, "name", ""))
    if job is not None:
        record_start(job)


@task_postrun.connect
def _beat_job_finished(sender: Any = None, state: str | None = None, retval: Any = None, **_: object) -> None:
    job = JOB_OF_TASK.get(getattr(sender, "name", ""))
    if job is not None:
        ok = state == "SUCCESS"
        record_end(job, ok=ok, message="" if ok else f"{state}: {str(retval)[:500]}")

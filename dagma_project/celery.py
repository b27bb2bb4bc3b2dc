"""The Celery application: workers (queues federation, media, push, maintenance) and beat.

    celery -A dagma_project worker -Q federation,media,push,maintenance
    celery -A dagma_project beat

The app itself is ``dagma_project.broker`` (serving processes load it to queue tasks); this
module is the workers' entry: a worker process starts like a server process does. Without a
broker (the quick start) the same tasks run in-process (``dagcore.taskqueue.runner``),
including the beat schedule.
"""

from __future__ import annotations

from celery.signals import worker_process_init

import dagma_project.beat  # noqa: F401 - connects the beat job records to the task signals
from dagcore.taskqueue.schedule import BEAT_SCHEDULE
from dagma_project.broker import app
from dagma_project.startup import on_process_start

__all__ = ["BEAT_SCHEDULE", "app"]


@worker_process_init.connect
def _on_worker_start(**_: object) -> None:
    """Workers write too (media, maintenance): register the cross-process notifier publisher."""
    on_process_start()

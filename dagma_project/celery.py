"""The Celery application: workers (queues federation, media, push, maintenance) and beat.

    celery -A dagma_project worker -Q federation,media,push,maintenance
    celery -A dagma_project beat

The app itself is ``dagma_project.broker`` (serving processes load it to queue tasks); this
module is the workers' entry: a worker process starts like a server process does. Without a
broker (the quick start) the same tasks run in-process (``dagcore.taskqueue.runner``),
including the beat schedule.

Metrics (``enable_metrics``): the worker's main process and beat each serve their own
listener; on a host running several, give each its port with ``DAGMA_METRICS_PORT=N``.
Task series are counted where tasks run, so a worker with metrics runs its tasks in its
main process: ``--pool threads`` (Dagma's tasks wait on the network and the database) or
``--pool solo``; with the prefork pool the children's task series are not served (logged
at start).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.signals import beat_init, task_postrun, task_prerun, worker_init, worker_process_init

import dagma_project.beat  # noqa: F401 - connects the beat job records to the task signals
from dagcore.taskqueue.schedule import BEAT_SCHEDULE
from dagma_project.broker import app
from dagma_project.startup import on_process_start

# What the signal handlers below import (models, through the store) is imported when they run:
# the worker loads this module before Django's apps are ready.

__all__ = ["BEAT_SCHEDULE", "app"]

logger = logging.getLogger("dagma.tasks")

#: Task ID -> when it started (monotonic), between task_prerun and task_postrun.
_started: dict[str, float] = {}
#: Celery's states as task outcomes.
_OUTCOMES = {"SUCCESS": "ok", "FAILURE": "failed", "RETRY": "retry"}


@worker_process_init.connect
def _on_worker_start(**_: object) -> None:
    """Workers write too (media, maintenance): register the cross-process notifier publisher."""
    on_process_start()


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: object) -> None:
    from dagcore.store.timing import install_query_timing
    from dagma_project.metrics import start_metrics

    install_query_timing()
    pool = getattr(sender, "pool_cls", None)
    pool_name = getattr(pool, "__module__", str(pool or ""))
    if start_metrics("worker") and "prefork" in pool_name:
        logger.warning(
            "metrics: the prefork pool runs tasks in child processes whose task series this "
            "listener does not serve; run metrics-enabled workers with --pool threads or solo"
        )


@beat_init.connect
def _on_beat_init(**_: object) -> None:
    from dagma_project.metrics import start_metrics

    start_metrics("beat")


@task_prerun.connect
def _on_task_start(task_id: str | None = None, task: Any = None, **_: object) -> None:
    if task_id is not None:
        _started[task_id] = time.monotonic()


@task_postrun.connect
def _on_task_end(task_id: str | None = None, task: Any = None, state: str | None = None,
                 retval: Any = None, **_: object) -> None:  # fmt: skip
    from dagcore.taskqueue.outcomes import note_task_end

    started = _started.pop(task_id or "", None)
    seconds = time.monotonic() - started if started is not None else 0.0
    outcome = _OUTCOMES.get(state or "", "failed")
    error = repr(retval) if outcome == "failed" else ""
    note_task_end(getattr(task, "name", "?"), outcome=outcome, seconds=seconds, error=error)

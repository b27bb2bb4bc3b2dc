"""What every background task run leaves behind: its metrics (runs by outcome, durations).

Called by both task runners: Celery's signals in a worker (``dagma_project.celery``) and
the in-process runner (:mod:`dagcore.taskqueue.runner`). Beat jobs' run records (read by the
``dagma_beat_last_success_timestamp_seconds`` gauge and the "job late" alert) are written by
:mod:`dagcore.taskqueue.jobs`.
"""

from __future__ import annotations

from dagcore.observability.metrics import TASK_RUNS, TASK_SECONDS


def note_task_end(task: str, *, outcome: str, seconds: float, error: str = "") -> None:
    """``outcome``: ok, failed or retry. A beat job's run record (start, end, outcome, lease)
    is kept by the beat side (:mod:`dagcore.taskqueue.jobs`), which knows a scheduled run from
    a nudge of the same task."""
    TASK_RUNS.labels(task, outcome).inc()
    TASK_SECONDS.labels(task).observe(seconds)

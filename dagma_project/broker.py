"""The Celery application as a producer: where queued tasks go when a broker is configured.

Loading this module registers the broker as the destination of ``dagcore.taskqueue.enqueue``
(``use_broker``). Serving processes load it at start (``dagma_project.startup``); workers and
beat load it through ``dagma_project.celery``, which adds what only workers need. Kept apart
from ``celery.py`` so that start-up and the worker entry do not import each other.
"""

from __future__ import annotations

import os

from celery import Celery

from dagcore.taskqueue.dispatch import use_broker
from dagcore.taskqueue.schedule import BEAT_SCHEDULE

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dagma_project.settings.worker")

app = Celery("dagma")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["dagcore.tasks", "embassy", "politburo"], related_name="tasks")

app.conf.beat_schedule = {
    # The header tells the worker's signal handlers which beat job a message runs
    # (dagma_project.beat records its start, end and outcome).
    name: {"task": task, "schedule": every, "options": {"headers": {"dagma_beat_job": name}}}
    for name, (task, every) in BEAT_SCHEDULE.items()
}
#: Beat sends a job only when it holds the job's lease in the database (no second beat sends it).
app.conf.beat_scheduler = "dagma_project.beat:LeasedScheduler"

# dagcore's task modules are named by area, not ``<package>.tasks``: named one by one. Loaded
# lazily like the others, once Django is set up (they import the actions, which import models).
app.autodiscover_tasks(
    [
        "dagcore.tasks.admin_jobs",
        "dagcore.tasks.doctor",
        "dagcore.tasks.e2e",
        "dagcore.tasks.maintenance",
        "dagcore.tasks.media",
        "dagcore.tasks.operations",
        "dagcore.tasks.push",
    ],
    related_name=None,
)


def _send(name: str, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    # By name: the routes in settings (CELERY_TASK_ROUTES) pick the queue.
    app.send_task(name, args=args, kwargs=kwargs)


use_broker(_send)

"""The Celery application: workers (queues federation, media, push, maintenance) and beat.

    celery -A dagma_project worker -Q federation,media,push,maintenance
    celery -A dagma_project beat

Without a broker (the quick start) the same tasks run in-process
(``dagcore.taskqueue.runner``), including the beat schedule below.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init

from dagcore.taskqueue.dispatch import use_broker
from dagcore.taskqueue.schedule import BEAT_SCHEDULE
from dagma_project.startup import on_process_start

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dagma_project.settings.worker")

app = Celery("dagma")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["dagcore.tasks", "embassy", "politburo"], related_name="tasks")

app.conf.beat_schedule = {
    name: {"task": task, "schedule": every} for name, (task, every) in BEAT_SCHEDULE.items()
}

# dagcore's task modules are named by area, not ``<package>.tasks``: named one by one. Loaded
# lazily like the others, once Django is set up (they import the actions, which import models).
app.autodiscover_tasks(
    ["dagcore.tasks.e2e", "dagcore.tasks.maintenance", "dagcore.tasks.media", "dagcore.tasks.push"],
    related_name=None,
)


def _send(name: str, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    # By name: the routes in settings (CELERY_TASK_ROUTES) pick the queue.
    app.send_task(name, args=args, kwargs=kwargs)


use_broker(_send)


@worker_process_init.connect
def _on_worker_start(**_: object) -> None:
    """Workers write too (media, maintenance): register the cross-process notifier publisher."""
    on_process_start()

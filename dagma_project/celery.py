"""The Celery application: workers (queues federation, media, push, maintenance) and beat.

    celery -A dagma_project worker -Q federation,media,push,maintenance
    celery -A dagma_project beat

Without a broker (the quick start) the same tasks run in-process
(``dagcore.tasks.runner``), including the beat schedule below.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dagma_project.settings.worker")

app = Celery("dagma")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["dagcore.tasks", "embassy", "politburo"], related_name="tasks")

#: Periodic jobs: name -> (task name, every N seconds).
BEAT_SCHEDULE: dict[str, tuple[str, float]] = {
    "expire-uia-sessions": ("dagcore.tasks.maintenance.expire_uia_sessions", 3600.0),
    "censor-redactions": ("dagcore.tasks.maintenance.censor_redactions", 600.0),
    "expire-client-txns": ("dagcore.tasks.maintenance.expire_client_txns", 3600.0),
    "expire-login-tokens": ("dagcore.tasks.maintenance.expire_login_tokens", 3600.0),
    "purge-media-retention": ("dagcore.tasks.media.purge_media_retention", 3600.0),
    "push-all": ("dagcore.tasks.push.push_all", 30.0),
}

app.conf.beat_schedule = {
    name: {"task": task, "schedule": every} for name, (task, every) in BEAT_SCHEDULE.items()
}

# dagcore's task modules are named by area, which ``autodiscover_tasks`` (it looks for
# ``<package>.tasks``) does not find: import them so workers and the in-process runner know them.
from celery.signals import worker_process_init  # noqa: E402

import dagcore.tasks.maintenance  # noqa: E402
import dagcore.tasks.media  # noqa: E402
import dagcore.tasks.push  # noqa: E402, F401


@worker_process_init.connect
def _on_worker_start(**_: object) -> None:
    """Workers write too (media, maintenance): register the cross-process notifier publisher."""
    from dagma_project.startup import on_process_start

    on_process_start()

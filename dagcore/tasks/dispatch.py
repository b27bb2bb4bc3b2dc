"""Enqueue a task after commit: to Celery when a broker is configured, else in-process."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from dagcore.tasks import runner


def enqueue(task: Any, *args: Any, **kwargs: Any) -> None:
    """``task`` is a Celery task; it runs once the current transaction commits."""

    def send() -> None:
        if settings.CELERY_BROKER_URL:
            task.apply_async(args=args, kwargs=kwargs)
        else:
            runner.submit(task.run, *args, **kwargs)

    transaction.on_commit(send)

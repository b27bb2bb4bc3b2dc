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
            # Server processes do not import the configured Celery app otherwise; without it
            # the task would go to Celery's default app (AMQP on localhost), not our broker.
            import dagma_project.celery  # noqa: F401

            task.apply_async(args=args, kwargs=kwargs)
        else:
            runner.submit(task.run, *args, **kwargs)

    transaction.on_commit(send)

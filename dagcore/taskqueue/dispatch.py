"""Enqueue a task after commit: to the broker when one is configured, else in-process.

Tasks are named, not imported (``enqueue("dagcore.tasks.push.push_room", room_nid)``):
task modules import the actions they run, so an action that queues work must not
import them back. The broker's sender is registered by the process that loaded the
Celery application (``dagma_project.broker``), which keeps ``dagcore`` free of the
project package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from django.conf import settings

from dagcore.store import transaction
from dagcore.taskqueue import runner

BrokerSender = Callable[[str, tuple[Any, ...], dict[str, Any]], None]
_broker_sender: BrokerSender | None = None


def use_broker(sender: BrokerSender) -> None:
    """Send enqueued tasks with ``sender(name, args, kwargs)`` (the Celery app registers it)."""
    global _broker_sender
    _broker_sender = sender


def resolve_task(name: str) -> Any:
    """The task object named ``package.module.function`` (the names the beat schedule uses)."""
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def enqueue(task_name: str, *args: Any, **kwargs: Any) -> None:
    """Run the named task once the current transaction commits (at once outside one)."""

    def send() -> None:
        if settings.CELERY_BROKER_URL:
            if _broker_sender is None:
                # A silent fallback would send to Celery's default app (AMQP on localhost).
                raise RuntimeError(
                    "a broker is configured but the Celery app is not loaded in this process "
                    "(dagma_project.startup.on_process_start loads it)"
                )
            _broker_sender(task_name, args, kwargs)
        else:
            runner.submit(resolve_task(task_name).run, *args, **kwargs)

    transaction.on_commit(send)

"""Celery beat and workers over the database's job leases (``dagcore.taskqueue.jobs``).

``LeasedScheduler`` (the app's ``beat_scheduler``) sends a due job only if it claims the job's
lease: a second ``celery beat`` of the same homeserver sends nothing the first one sent. The
worker side records each beat job's start, end and outcome from Celery's signals
(``task_prerun``, ``task_postrun``, ``task_failure``) for messages the beat marked with the
``dagma_beat_job`` header, and frees the lease when the run ends.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import django
from celery.beat import PersistentScheduler, ScheduleEntry
from celery.signals import task_failure, task_postrun, task_prerun

logger = logging.getLogger("dagma.tasks")
HEADER = "dagma_beat_job"
#: The process that imported this module; beat embedded in a worker (-B) is a fork of it.
_IMPORTED_IN = os.getpid()


class LeasedScheduler(PersistentScheduler):
    def setup_schedule(self) -> None:
        from django.apps import apps

        if not apps.ready:
            # `celery beat` is not a worker: nothing else sets Django up before the first claim.
            # (Not again when embedded in a worker: setup() would replace Celery's logging.)
            django.setup()
        if os.getpid() != _IMPORTED_IN:
            from dagcore.store.transaction import forget_inherited_connections

            forget_inherited_connections()  # the worker's, shared by fork: never ours to use
        from dagcore.taskqueue.jobs import runner_id

        self.dagma_owner = f"celery-beat:{runner_id()}"
        super().setup_schedule()

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        from dagcore.store.transaction import close_old_connections
        from dagcore.taskqueue.jobs import UnknownJob, claim_due_job

        try:
            claimed = claim_due_job(entry.name, owner=self.dagma_owner)
        except UnknownJob:
            claimed = True  # Celery's own entries (e.g. backend cleanup): not ours to lease
        finally:
            close_old_connections()
        if not claimed:
            # Normal when a run outlasts its period; otherwise a second beat runs for this
            # homeserver (it does no harm, but one is enough).
            logger.warning(
                "beat job %s skipped: another beat sent it within its period or it is still running",
                entry.name,
            )
            return
        super().apply_entry(entry, producer=producer)


def _job_of(task: Any) -> str | None:
    request = getattr(task, "request", None)
    headers = getattr(request, "headers", None) or {}
    name = getattr(request, HEADER, None) or headers.get(HEADER)
    return str(name) if name else None


@task_prerun.connect
def _job_started(task: Any = None, **_: Any) -> None:
    name = _job_of(task)
    if name:
        from dagcore.taskqueue.jobs import note_job_started

        note_job_started(name)


@task_failure.connect
def _job_failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    name = _job_of(sender)
    if name:
        from dagcore.taskqueue.jobs import note_job_finished

        note_job_finished(name, ok=False, message=f"{type(exception).__name__}: {exception}")


@task_postrun.connect
def _job_finished(task: Any = None, retval: Any = None, state: str | None = None, **_: Any) -> None:
    name = _job_of(task)
    if name and state == "SUCCESS":
        from dagcore.taskqueue.jobs import note_job_finished

        note_job_finished(name, ok=True, message="" if retval is None else str(retval)[:500])

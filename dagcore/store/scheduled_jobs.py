"""Leases of beat jobs (``scheduled_job_runs``): one runner at a time per job, one run per period.

A claim is one conditional ``UPDATE`` (the lease is free or expired, and the job did not start
within ``min_interval_ms``), atomic on PostgreSQL and SQLite alike, so of two beats (two
``celery beat`` processes, two in-process runners of one homeserver) exactly one wins.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from dagcore.models import ScheduledJobRun


def claim_job_lease(name: str, *, owner: str, now: int, lease_ms: int, min_interval_ms: int = 0) -> bool:
    """Take the lease of job ``name`` for ``owner`` until ``now + lease_ms``; False if another
    holds it, or the job started less than ``min_interval_ms`` ago (another beat ran it)."""
    ScheduledJobRun.objects.bulk_create([ScheduledJobRun(name=name)], ignore_conflicts=True)
    free = Q(lease_until_ts__isnull=True) | Q(lease_until_ts__lt=now)
    qs = ScheduledJobRun.objects.filter(free, name=name)
    if min_interval_ms > 0:
        qs = qs.filter(Q(last_started_ts__isnull=True) | Q(last_started_ts__lte=now - min_interval_ms))
    return bool(qs.update(lease_owner=owner[:255], lease_until_ts=now + lease_ms, last_started_ts=now))


def mark_job_started(name: str, *, now: int) -> None:
    """A worker began the job the beat sent (Celery: ``task_prerun``)."""
    updated = ScheduledJobRun.objects.filter(name=name).update(last_started_ts=now)
    if not updated:
        ScheduledJobRun.objects.bulk_create(
            [ScheduledJobRun(name=name, last_started_ts=now)], ignore_conflicts=True
        )


def finish_job(name: str, *, now: int, ok: bool, message: str, owner: str | None = None) -> None:
    """Record the outcome and free the lease (only ``owner``'s lease, when given)."""
    fields: dict[str, Any] = {
        "last_finished_ts": now, "outcome": "ok" if ok else "failed", "message": message[:2000],
        "lease_owner": "", "lease_until_ts": None,
    }  # fmt: skip
    if ok:
        fields["last_success_ts"] = now
    qs = ScheduledJobRun.objects.filter(name=name)
    if owner is not None:
        qs = qs.filter(lease_owner=owner)
    qs.update(**fields)


def get_job_run(name: str) -> ScheduledJobRun | None:
    return ScheduledJobRun.objects.filter(name=name).first()

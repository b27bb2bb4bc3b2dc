"""Operations beat jobs (issue 14): thin and idempotent, each over one dagcore action."""

from __future__ import annotations

from celery import shared_task

from dagcore.actions import backup, expiry_checks, extremities, retention
from dagcore.actions.audit import Actor
from dagcore.clock import now_ms
from dagcore.taskqueue.jobs import runner_id


@shared_task(name="dagcore.tasks.operations.purge_expired_events")
def purge_expired_events() -> dict[str, int]:
    """Message retention: each configured purge job whose interval has passed."""
    return retention.do_run_retention_purge_jobs(
        now=now_ms(), actor=Actor.beat("purge-expired-events"), owner=runner_id()
    )


@shared_task(name="dagcore.tasks.operations.expire_registration_tokens")
def expire_registration_tokens() -> int:
    return retention.do_delete_expired_registration_tokens(
        now=now_ms(), dry_run=False, actor=Actor.beat("expire-registration-tokens")
    )


@shared_task(name="dagcore.tasks.operations.delete_stale_devices")
def delete_stale_devices() -> int:
    return retention.do_delete_stale_devices(
        now=now_ms(), dry_run=False, actor=Actor.beat("delete-stale-devices")
    )


@shared_task(name="dagcore.tasks.operations.check_expiry")
def check_expiry() -> dict[str, str]:
    return expiry_checks.do_check_expiry(now=now_ms())


@shared_task(name="dagcore.tasks.operations.backup_nightly")
def backup_nightly() -> str:
    return backup.do_scheduled_backup(now=now_ms(), actor=Actor.beat("backup-nightly"))


@shared_task(name="dagcore.tasks.operations.backup_verify_weekly")
def backup_verify_weekly() -> str:
    return backup.do_scheduled_verify(now=now_ms())


@shared_task(name="dagcore.tasks.operations.merge_extremities")
def merge_extremities() -> int:
    """A dummy event in each room over 10 forward extremities (as Synapse sends them)."""
    return extremities.do_merge_extremities()

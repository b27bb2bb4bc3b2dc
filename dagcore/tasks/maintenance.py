"""Periodic maintenance (beat schedule in ``dagcore.taskqueue.schedule``). Thin and idempotent."""

from __future__ import annotations

from celery import shared_task

from dagcore.actions.maintenance import (
    do_censor_redactions,
    do_expire_client_txns,
    do_expire_login_tokens,
    do_expire_uia_sessions,
)
from dagcore.actions.profile import do_purge_remote_profiles
from dagcore.actions.to_device import do_expire_received_message_ids


@shared_task(name="dagcore.tasks.maintenance.expire_uia_sessions")
def expire_uia_sessions() -> int:
    return do_expire_uia_sessions()


@shared_task(name="dagcore.tasks.maintenance.censor_redactions")
def censor_redactions() -> int:
    return do_censor_redactions()


@shared_task(name="dagcore.tasks.maintenance.expire_client_txns")
def expire_client_txns() -> int:
    return do_expire_client_txns()


@shared_task(name="dagcore.tasks.maintenance.expire_login_tokens")
def expire_login_tokens() -> int:
    return do_expire_login_tokens()


@shared_task(name="dagcore.tasks.maintenance.expire_remote_profiles")
def expire_remote_profiles() -> int:
    """Forget other servers' profile answers past their few minutes (the cache is read with a
    freshness bound anyway: this only keeps the table small)."""
    return do_purge_remote_profiles()


@shared_task(name="dagcore.tasks.maintenance.expire_received_to_device_ids")
def expire_received_to_device_ids() -> int:
    """Forget other servers' to-device message IDs past the week a resend could come in."""
    return do_expire_received_message_ids()

"""Periodic maintenance (beat schedule in ``dagma_project.celery``). Thin and idempotent."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="dagcore.tasks.maintenance.expire_uia_sessions")
def expire_uia_sessions() -> int:
    from dagcore.actions.maintenance import do_expire_uia_sessions

    return do_expire_uia_sessions()


@shared_task(name="dagcore.tasks.maintenance.censor_redactions")
def censor_redactions() -> int:
    from dagcore.actions.maintenance import do_censor_redactions

    return do_censor_redactions()


@shared_task(name="dagcore.tasks.maintenance.expire_client_txns")
def expire_client_txns() -> int:
    from dagcore.actions.maintenance import do_expire_client_txns

    return do_expire_client_txns()


@shared_task(name="dagcore.tasks.maintenance.expire_login_tokens")
def expire_login_tokens() -> int:
    from dagcore.actions.maintenance import do_expire_login_tokens

    return do_expire_login_tokens()

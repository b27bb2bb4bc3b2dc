"""The beat schedule: periodic jobs by task name, for Celery beat and the in-process runner."""

from __future__ import annotations

#: name -> (task name, every N seconds).
BEAT_SCHEDULE: dict[str, tuple[str, float]] = {
    "expire-uia-sessions": ("dagcore.tasks.maintenance.expire_uia_sessions", 3600.0),
    "censor-redactions": ("dagcore.tasks.maintenance.censor_redactions", 600.0),
    "expire-client-txns": ("dagcore.tasks.maintenance.expire_client_txns", 3600.0),
    "expire-login-tokens": ("dagcore.tasks.maintenance.expire_login_tokens", 3600.0),
    "expire-remote-profiles": ("dagcore.tasks.maintenance.expire_remote_profiles", 3600.0),
    "expire-received-to-device-ids": ("dagcore.tasks.maintenance.expire_received_to_device_ids", 3600.0),
    "admin-jobs-rescan": ("dagcore.tasks.admin_jobs.run_scheduled_jobs", 60.0),
    "purge-media-retention": ("dagcore.tasks.media.purge_media_retention", 3600.0),
    "push-all": ("dagcore.tasks.push.push_all", 30.0),
    # manage.py doctor's checks, kept as check results for the dashboard and metrics.
    "doctor-nightly": ("dagcore.tasks.doctor.run_doctor", 86400.0),
    # Operations (issue 14). Retention runs its configured purge_jobs at their own intervals.
    "purge-expired-events": ("dagcore.tasks.operations.purge_expired_events", 3600.0),
    "expire-registration-tokens": ("dagcore.tasks.operations.expire_registration_tokens", 3600.0),
    "delete-stale-devices": ("dagcore.tasks.operations.delete_stale_devices", 86400.0),
    "merge-extremities": ("dagcore.tasks.operations.merge_extremities", 3600.0),
    "check-expiry": ("dagcore.tasks.operations.check_expiry", 86400.0),
    "backup-nightly": ("dagcore.tasks.operations.backup_nightly", 86400.0),
    "backup-verify-weekly": ("dagcore.tasks.operations.backup_verify_weekly", 7 * 86400.0),
    # Destinations whose back-off is over, or whose nudge was lost (the outbox is the truth).
    "federation-send-pending": ("embassy.tasks.send_pending", 10.0),
    # Staged inbound PDUs a /send could not finish in its time budget, or a dead worker left.
    "federation-process-inbound": ("embassy.tasks.process_pending", 30.0),
    "federation-expire-received-txns": ("embassy.tasks.expire_received_transactions", 3600.0),
    # Other servers mark our users offline after 30 minutes without news of them (Synapse's
    # FEDERATION_TIMEOUT); every 25 minutes (dagcore.actions.presence.KEEPALIVE_INTERVAL_MS).
    "federation-presence-keepalive": ("embassy.tasks.presence_keepalive", 1500.0),
}


def beat_jobs_for_role(role: str) -> dict[str, tuple[str, float]]:
    """The jobs a server runs itself when there is no broker (the in-process runner).

    Embassy sends and processes federation traffic (DESIGN.md: it can be stopped while
    local users keep working), so its jobs run only where it runs; Tribune runs the rest
    (push, media, maintenance), so that a stopped Embassy stops no push; ``all`` runs both.
    """
    if role == "all":
        return dict(BEAT_SCHEDULE)
    federation = role == "embassy"
    return {name: job for name, job in BEAT_SCHEDULE.items() if job[0].startswith("embassy.") == federation}

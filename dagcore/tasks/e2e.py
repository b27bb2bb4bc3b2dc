"""E2EE tasks (Celery queue ``maintenance``): thin and idempotent."""

from __future__ import annotations

from celery import shared_task

from dagcore.actions.federated_keys import do_resync_remote_device_list


@shared_task(name="dagcore.tasks.e2e.resync_remote_device_list")
def resync_remote_device_list(user_id: str) -> bool:
    """A device-list update of this remote user was missed: fetch the whole list again."""
    return do_resync_remote_device_list(user_id=user_id)

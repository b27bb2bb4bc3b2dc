"""Embassy's Celery tasks (queue ``federation``, per ``CELERY_TASK_ROUTES``): thin and idempotent.

The outbox rows are the truth (STYLE.md #9): a task only says "look at this
destination now". Run twice, or lost, nothing is sent twice or lost.
"""

from __future__ import annotations

import logging
import threading

from celery import shared_task

from dagcore.actions.presence import do_send_presence_keepalive
from dagcore.federation.sender import do_contact_pending_peers, do_send_pending, do_send_to_destination
from dagcore.store.transaction import close_old_connections
from embassy.inbound import do_expire_received_transactions, do_process_pending, do_process_room

logger = logging.getLogger("embassy")


@shared_task(name="embassy.tasks.send_to_destination")
def send_to_destination(destination: str) -> int:
    """Send the destination's outbox (returns the PDUs delivered)."""
    return do_send_to_destination(destination=destination).sent_pdus


@shared_task(name="embassy.tasks.send_pending")
def send_pending() -> int:
    """Beat: re-scan the outbox; queue a sender for each destination that is due."""
    return len(do_send_pending())


@shared_task(name="embassy.tasks.process_inbound")
def process_inbound(room_id: str) -> int:
    """Persist the staged PDUs of a room, in order (returns how many were handled)."""
    return do_process_room(room_id=room_id)


@shared_task(name="embassy.tasks.process_pending")
def process_pending() -> int:
    """Beat: queue a worker for every room with staged PDUs that nobody is processing."""
    return len(do_process_pending())


@shared_task(name="embassy.tasks.expire_received_transactions")
def expire_received_transactions() -> int:
    """Beat: forget answered transactions old enough that no sender still retries them."""
    return do_expire_received_transactions()


@shared_task(name="embassy.tasks.presence_keepalive")
def presence_keepalive() -> int:
    """Beat: our present users' presence again to the servers sharing their rooms (they time
    remote users out after 30 minutes of silence)."""
    return do_send_presence_keepalive()


def _contact_peers() -> None:
    try:
        contacted = do_contact_pending_peers()
        if contacted:
            logger.info("embassy started: contacting %d peers with pending traffic", len(contacted))
    except Exception:
        logger.exception("contacting peers with pending traffic failed")
    finally:
        close_old_connections()


def on_start() -> None:
    """Embassy start-up hook (``dagma_project.startup``): contact peers with pending traffic.

    On a thread: start-up must not wait on remote servers (without a broker the first
    senders may run right there, before the in-process runner exists).
    """
    threading.Thread(target=_contact_peers, name="dagma-embassy-contact", daemon=True).start()

"""Push tasks (Celery queue ``push``): thin and idempotent, positions live in the database."""

from __future__ import annotations

from celery import shared_task

from dagcore.actions.pushers import do_push_all, do_push_room


@shared_task(name="dagcore.tasks.push.push_room")
def push_room(room_nid: int) -> int:
    """A new event in this room: run the pushers of its local members."""
    return do_push_room(room_nid=room_nid)


@shared_task(name="dagcore.tasks.push.push_all")
def push_all() -> int:
    """Beat: run every pusher (retries failing gateways, covers lost nudges)."""
    return do_push_all()

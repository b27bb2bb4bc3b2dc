"""After-commit fan-out of "something changed" (DESIGN.md §3 step 5).

Writers call :func:`notify` inside their transaction; listeners run only after
commit. Listeners are registered by the interfaces that care (Tribune wakes
``/sync`` long-polls across processes through the channel layer), so
``dagcore`` never imports an interface.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from dagcore.events_persisted import EventsPersisted
from dagcore.store import transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """A committed change: which stream moved, to where, and who should hear about it."""

    stream: str
    position: int
    room_id: str | None = None
    user_ids: tuple[str, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)


Listener = Callable[[Change], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def _dispatch(change: Change) -> None:
    for listener in list(_listeners):
        try:
            listener(change)
        except Exception:  # a broken listener must not lose the write or others' wake-ups
            logger.exception("notifier listener failed")


def notify(change: Change) -> None:
    """Deliver ``change`` to listeners once the current transaction commits."""
    transaction.on_commit(lambda: _dispatch(change))


def on_events_persisted(batch: EventsPersisted) -> None:
    """The events stream's subscriber to the pipeline's seam (already after commit): wake /sync.

    A membership event also names its target, whose room list just changed (an invite or
    a join must reach a user who is not yet among the room's members).
    """
    for info in batch.events:
        users: tuple[str, ...] = ()
        if info.type == "m.room.member" and info.state_key is not None:
            users = (info.state_key,)
        _dispatch(
            Change(
                stream="events",
                position=info.stream_ordering,
                room_id=batch.room_id,
                user_ids=users,
                extra={"event_id": info.event_id, "type": info.type},
            )
        )

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

from django.db import transaction

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

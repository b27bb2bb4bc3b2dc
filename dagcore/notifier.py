"""After-commit fan-out of "something changed" (DESIGN.md §3 step 5).

Writers call :func:`notify` inside their transaction; listeners run only after
commit. Listeners are registered by the interfaces that care (Tribune wakes
``/sync`` long-polls across processes through the channel layer), so
``dagcore`` never imports an interface.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
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


class AfterResponse:
    """Calls held until the current request's response is written (:func:`after_response`).

    Thread-safe: the view that commits runs in a thread while the server writes the
    response on its loop; a call added after :meth:`close` (a view still running when its
    client went away) runs at once, so none is ever dropped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Callable[[], None]] = []
        self._closed = False

    def add(self, call: Callable[[], None]) -> None:
        with self._lock:
            if not self._closed:
                self._calls.append(call)
                return
        call()

    def close(self) -> list[Callable[[], None]]:
        """The held calls, for the caller to run; later ones run as they come."""
        with self._lock:
            self._closed = True
            calls, self._calls = self._calls, []
        return calls


#: Set by a server that writes a request's response and then runs what its view held
#: (``dagma_project.asgi.common.DirectViews``: ``PUT /send``).
holding_for_response: ContextVar[AfterResponse | None] = ContextVar("dagma_after_response", default=None)


def after_response(call: Callable[[], None]) -> None:
    """Run ``call`` once the current request's response is written, where the server holds
    such calls, else now. The ``/sync`` wake of a sent event goes this way: a client's own
    sync then never brings its event back before the ``PUT /send`` that made it has answered
    (matrix-js-sdk fails a threaded message whose remote echo beats its send's response)."""
    held = holding_for_response.get()
    if held is None:
        call()
    else:
        held.add(call)


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

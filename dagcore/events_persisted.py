"""The event pipeline's one after-commit seam: "events persisted" (DESIGN.md §3 step 5).

The pipeline (``dagcore.actions.persist_event``) knows no consumer of what it writes.
For every event that becomes part of a room's timeline it announces an
:class:`EventsPersisted` inside the event's transaction; subscribers receive it only
after that transaction commits, so nothing ever hears of an event that rolled back.

The announcement is a *nudge*, never the record: what must survive a crash (push
positions per pusher, the federation outbox) is a database row written in the event's
own transaction or derived from the event rows, and a beat job re-scans those rows. A
lost nudge, a crashed subscriber or a stopped Embassy delays delivery, never loses it.

Subscribers are registered by the apps that need them (``dagcore.apps`` registers
the /sync notifier and push; the federation outbox registers itself the same way),
each under a name so a re-registration replaces rather than duplicates.

A consumer whose record must be written *with* the event (the federation outbox: one
row per destination server) registers a recorder with :func:`record_with` instead: it
runs inside the event's transaction, under the room's write lock, and what it raises
rolls the event back. Recorders write rows; they never send, wait or call out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from dagcore.protocol.events import Event
from dagcore.store import transaction

logger = logging.getLogger("dagma.events_persisted")


@dataclass(frozen=True)
class PersistedEventInfo:
    """One event as subscribers need it: no PDU, so no subscriber re-serialises it by accident."""

    event_id: str
    type: str
    state_key: str | None
    sender: str
    stream_ordering: int


@dataclass(frozen=True)
class EventsPersisted:
    """Events of one room that a committed transaction made part of the room."""

    room_id: str
    room_nid: int
    events: tuple[PersistedEventInfo, ...]
    #: True for events our users sent, False for events received from other servers.
    local: bool
    #: A received event we accepted as a server in the room on behalf of this server
    #: (send_join and friends): it goes on to the room's other servers, not back to it.
    relayed_for: str | None = None

    @classmethod
    def of_event(
        cls,
        event: Event,
        *,
        room_nid: int,
        stream_ordering: int,
        local: bool,
        relayed_for: str | None = None,
    ) -> EventsPersisted:
        """The batch of one persisted event."""
        info = PersistedEventInfo(
            event_id=event.event_id,
            type=event.type,
            state_key=event.state_key,
            sender=event.sender,
            stream_ordering=stream_ordering,
        )
        return cls(
            room_id=event.room_id,
            room_nid=room_nid,
            events=(info,),
            local=local,
            relayed_for=relayed_for,
        )

    @property
    def max_stream_ordering(self) -> int:
        return max(e.stream_ordering for e in self.events)


Subscriber = Callable[[EventsPersisted], None]
_subscribers: dict[str, Subscriber] = {}
_recorders: dict[str, Subscriber] = {}


def record_with(name: str, recorder: Subscriber) -> None:
    """Call ``recorder`` inside the transaction of each batch of persisted events (see above)."""
    _recorders[name] = recorder


def stop_recording(name: str) -> None:
    _recorders.pop(name, None)


def subscribe(name: str, subscriber: Subscriber) -> None:
    """Call ``subscriber`` after each commit that persisted events (replaces an earlier ``name``)."""
    _subscribers[name] = subscriber


def unsubscribe(name: str) -> None:
    _subscribers.pop(name, None)


def subscriber_names() -> list[str]:
    return list(_subscribers)


def _deliver(batch: EventsPersisted) -> None:
    for name, subscriber in list(_subscribers.items()):
        try:
            subscriber(batch)
        except Exception:
            # The events are committed; one broken subscriber must not cost the others their nudge.
            logger.exception("events-persisted subscriber %s failed for %s", name, batch.room_id)


def announce_persisted(batch: EventsPersisted) -> None:
    """Run the recorders now (in the event's transaction); the subscribers once it commits."""
    for recorder in list(_recorders.values()):
        recorder(batch)
    transaction.on_commit(lambda: _deliver(batch))

"""The federation outbox: who must receive each local event, recorded with the event.

DESIGN.md §3 step 5, STYLE.md #9. :func:`record_outbox` is a recorder of the
after-commit seam (``events_persisted.record_with``): it runs inside the event's
transaction and writes one outbox row per destination server, so an event that
commits is an event that will be delivered — whatever happens to the broker, the
workers or Embassy afterwards. :func:`nudge_senders` (a subscriber, after commit)
only asks for the rows to be sent sooner; the beat job finds them without it.

Destinations (spec: server-server API "Transactions", and Synapse's
``get_joined_hosts`` before/after): the servers with joined members in the room
before and after the event, plus the server of a remote membership target (an
invite, kick or ban of ``@x:remote``), never ourselves. A local event changes the
room's membership only at its own state key, so "before and after" is the servers
joined after it plus the state key's server. Rooms created with ``m.federate: false``
stay local (spec: ``m.room.create``).
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from dagcore.clock import now_ms
from dagcore.events_persisted import EventsPersisted
from dagcore.protocol.identifiers import parse_user_id
from dagcore.server_keys import get_server_name
from dagcore.store import outbox as outbox_store
from dagcore.taskqueue import runner
from dagcore.taskqueue.dispatch import enqueue

logger = logging.getLogger("dagma.federation.outbox")

SEND_TASK = "embassy.tasks.send_to_destination"


class _FederateCache:
    """Whether a room federates (its create event never changes), per room ID (never reused,
    unlike a room's nid, which a rolled-back transaction may hand out again)."""

    def __init__(self, size: int = 10_000) -> None:
        self._values: dict[str, bool] = {}
        self._size = size
        self._lock = threading.Lock()

    def get(self, room_id: str, room_nid: int) -> bool:
        with self._lock:
            known = self._values.get(room_id)
        if known is not None:
            return known
        value = outbox_store.get_create_content(room_nid).get("m.federate", True) is not False
        with self._lock:
            if len(self._values) >= self._size:
                self._values.clear()
            self._values[room_id] = value
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


room_federates = _FederateCache()


def _server_of(user_id: str | None) -> str | None:
    try:
        return parse_user_id(user_id)[1]
    except ValueError:
        return None


def record_outbox(batch: EventsPersisted) -> None:
    """Recorder: the outbox rows of a batch of local events, in the events' transaction."""
    if not (batch.local or batch.relayed_for) or not settings.DAGMA.federation_enabled:
        return
    if not room_federates.get(batch.room_id, batch.room_nid):
        return
    now = now_ms()
    for info in batch.events:
        # A membership event also goes to its target's server (an invite, kick or ban of a
        # remote user), which may have no joined member left (or none yet).
        target = _server_of(info.state_key) if info.type == "m.room.member" else None
        outbox_store.add_outbox_entries_for_event(
            room_nid=batch.room_nid,
            event_id=info.event_id,
            extra_server=None if batch.relayed_for else target,
            exclude=get_server_name(),
            also_exclude=batch.relayed_for,
            now=now,
        )


def sends_in_this_process() -> bool:
    """Whether a nudge may start a sender: with a broker (a worker takes it), or where the
    in-process runner sends federation traffic (``serve all`` / ``serve embassy`` without a
    broker). ``serve tribune`` without a broker only writes rows (its runner does push and
    maintenance): its requests never wait on a remote server."""
    return bool(settings.CELERY_BROKER_URL) or runner.sends_federation()


def nudge_senders(batch: EventsPersisted) -> None:
    """Subscriber (after commit): start the senders of the destinations the batch queued for
    (our own events, and those we relayed as the resident server)."""
    if not (batch.local or batch.relayed_for) or not sends_in_this_process():
        return
    for destination in outbox_store.get_destinations_for_events([e.event_id for e in batch.events]):
        enqueue(SEND_TASK, destination)

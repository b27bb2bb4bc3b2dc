"""Merging forward extremities (issue 14's beat job "extremity merging").

Every forward extremity of a room is a branch that state resolution must reconcile on each
new event; a netsplit, or a server that was down, can leave dozens. Synapse sends an
``org.matrix.dummy_event`` when a room has more than 10 (its ``_send_dummy_events_to_fill_extremities``);
so does this job: each dummy event cites up to 20 extremities (``send_local_event``'s cap),
sent by a local member, so a room's count falls run by run. A room without a local member is
left alone (no one of ours may speak there: ``dag check`` still reports it).
"""

from __future__ import annotations

import logging

from dagcore.actions.audit import Actor, record_audit
from dagcore.actions.persist_event import send_local_event
from dagcore.http.errors import MatrixError
from dagcore.server_keys import get_server_name
from dagcore.store import health as health_store
from dagcore.store import rooms as room_store
from dagcore.store import timeline

logger = logging.getLogger("dagma.extremities")

#: Synapse's threshold for dummy events.
MERGE_ABOVE = 10
DUMMY_EVENT_TYPE = "org.matrix.dummy_event"
#: Rooms merged per run (the worst first); the next run takes the rest.
ROOMS_PER_RUN = 100


def _local_member(room_id: str) -> str | None:
    room = room_store.get_room(room_id)
    if room is None:
        return None
    suffix = ":" + get_server_name()
    local = [user for user, _, _ in timeline.get_joined_members(room) if user.endswith(suffix)]
    return local[0] if local else None


def do_merge_extremities(*, above: int = MERGE_ABOVE) -> int:
    """One dummy event in each room over ``above`` forward extremities; returns how many were sent."""
    _count, rooms = health_store.rooms_over_extremities(threshold=above, limit=ROOMS_PER_RUN)
    sent = 0
    for row in rooms:
        sender = _local_member(row.room_id)
        if sender is None:
            continue
        try:
            event = send_local_event(
                room_id=row.room_id, sender=sender, event_type=DUMMY_EVENT_TYPE, content={}
            )
        except MatrixError as exc:
            logger.warning("could not merge the extremities of %s: %s", row.room_id, exc)
            continue
        sent += 1
        record_audit(
            actor=Actor.beat("merge-extremities"), action="extremities.merge", target=row.room_id,
            params={"sender": sender}, counts={"extremities_before": row.count, "event_id": event.event.event_id},
        )  # fmt: skip
    return sent

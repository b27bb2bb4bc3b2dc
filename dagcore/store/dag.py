"""Walks of the event DAG for the federation reads: bounded, one query per step.

Backward walks (``backfill``, ``get_missing_events``) follow ``prev_events`` edges
breadth-first from the given events; auth chains come from the materialised
``auth_chain`` of state events (never a walk of the auth DAG).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from dagcore.models import Event as EventRow
from dagcore.models import EventEdge, Room, RoomMembership
from dagcore.store.events import StoredEvent, get_events_by_ids, get_events_by_nids


def walk_prev_events(
    *, room: Room, start_ids: Sequence[str], stop_ids: Iterable[str] = (), limit: int, min_depth: int = 0,
    include_start: bool = False,
) -> list[StoredEvent]:  # fmt: skip
    """Events reached backwards from ``start_ids`` through prev_events, breadth-first, at most
    ``limit``; not beyond ``stop_ids`` (which are not returned) nor below ``min_depth``."""
    stop = set(stop_ids)
    seen: set[str] = set(start_ids)
    found: dict[str, StoredEvent] = {}
    frontier = [s for s in start_ids if s not in stop]
    if include_start:
        for first in get_events_by_ids(frontier).values():
            if first.room_nid == room.pk and len(found) < limit:
                found[first.event_id] = first
    while frontier and len(found) < limit:
        edges = list(
            EventEdge.objects.filter(event__event_id__in=frontier, event__room=room).values_list(
                "prev_event_id", flat=True
            )
        )
        nexts = [p for p in dict.fromkeys(edges) if p not in seen and p not in stop]
        seen.update(nexts)
        known = get_events_by_ids(nexts)
        frontier = []
        for event_id in nexts:
            event = known.get(event_id)
            if event is None or event.room_nid != room.pk or event.depth < min_depth:
                continue
            if len(found) >= limit:
                break
            found[event_id] = event
            frontier.append(event_id)
    return list(found.values())


def get_auth_chain(events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """The auth chain of the events: their auth events, theirs, and so on (spec: ``auth_chain``)."""
    auth_ids = {a for e in events for a in e.event.auth_event_ids}
    if not auth_ids:
        return []
    auth_nids = list(EventRow.objects.filter(event_id__in=list(auth_ids)).values_list("id", flat=True))
    chain: set[int] = set(auth_nids)
    for raw in EventRow.objects.filter(id__in=auth_nids).values_list("auth_chain", flat=True):
        if raw:
            chain.update(json.loads(raw))
    return sorted(get_events_by_nids(chain).values(), key=lambda e: (e.depth, e.nid))


def get_server_user_ids(room: Room, server_name: str) -> list[str]:
    """The users of ``server_name`` with any membership in the room (whose state may be asked for)."""
    return list(
        RoomMembership.objects.filter(room=room, user_id__endswith=":" + server_name).values_list(
            "user_id", flat=True
        )
    )

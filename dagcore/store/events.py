"""Reading and writing events, their edges and the room's forward extremities."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dagcore.models import Event as EventRow
from dagcore.models import EventAuthEdge, EventEdge, ForwardExtremity, Room
from dagcore.protocol.events import Event
from dagcore.protocol.room_versions import get_room_version

#: Columns every reader needs; ``json`` is the PDU.
_FIELDS = (
    "id",
    "event_id",
    "json",
    "room__room_version",
    "room_id",
    "stream_ordering",
    "depth",
    "outlier",
    "rejected_reason",
    "soft_failed",
    "state_group_before",
    "state_group",
    "redacted_by",
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A persisted event: the PDU (as a protocol ``Event``) plus what we know about it."""

    nid: int
    event: Event
    room_nid: int
    stream_ordering: int | None
    depth: int
    outlier: bool
    rejected_reason: str | None
    soft_failed: bool
    state_group_before: int | None
    state_group: int | None
    redacted_by: str | None

    @property
    def event_id(self) -> str:
        return self.event.event_id


def _from_values(row: dict[str, Any]) -> StoredEvent:
    version = get_room_version(row["room__room_version"], require_supported=False)
    event = Event(json.loads(row["json"]), version, row["event_id"], rejected_reason=row["rejected_reason"])
    return StoredEvent(
        nid=row["id"],
        event=event,
        room_nid=row["room_id"],
        stream_ordering=row["stream_ordering"],
        depth=row["depth"],
        outlier=row["outlier"],
        rejected_reason=row["rejected_reason"],
        soft_failed=row["soft_failed"],
        state_group_before=row["state_group_before"],
        state_group=row["state_group"],
        redacted_by=row["redacted_by"],
    )


def get_events_by_ids(event_ids: Iterable[str]) -> dict[str, StoredEvent]:
    ids = list(set(event_ids))
    out: dict[str, StoredEvent] = {}
    for start in range(0, len(ids), 500):
        for row in EventRow.objects.filter(event_id__in=ids[start : start + 500]).values(*_FIELDS):
            ev = _from_values(row)
            out[ev.event_id] = ev
    return out


def get_event_by_id(event_id: str) -> StoredEvent | None:
    return get_events_by_ids([event_id]).get(event_id)


def get_events_by_nids(nids: Iterable[int]) -> dict[int, StoredEvent]:
    ids = list(set(nids))
    out: dict[int, StoredEvent] = {}
    for start in range(0, len(ids), 500):
        for row in EventRow.objects.filter(id__in=ids[start : start + 500]).values(*_FIELDS):
            ev = _from_values(row)
            out[ev.nid] = ev
    return out


def get_nids_for_event_ids(event_ids: Iterable[str]) -> dict[str, int]:
    ids = list(set(event_ids))
    out: dict[str, int] = {}
    for start in range(0, len(ids), 500):
        out.update(EventRow.objects.filter(event_id__in=ids[start : start + 500]).values_list("event_id", "id"))
    return out


def get_event_ids_for_nids(nids: Iterable[int]) -> dict[int, str]:
    ids = list(set(nids))
    out: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        out.update(EventRow.objects.filter(id__in=ids[start : start + 500]).values_list("id", "event_id"))
    return out


@dataclass(frozen=True, slots=True)
class Extremity:
    nid: int
    event_id: str
    depth: int
    state_group: int | None


def get_forward_extremities(room: Room) -> list[Extremity]:
    rows = (
        ForwardExtremity.objects.filter(room=room)
        .values_list("event_id", "event__event_id", "event__depth", "event__state_group")
        .order_by("-event__depth", "event_id")
    )
    return [Extremity(nid, eid, depth, sg) for nid, eid, depth, sg in rows]


def insert_event(
    *,
    room: Room,
    event: Event,
    received_ts: int,
    outlier: bool,
    rejected_reason: str | None,
    soft_failed: bool,
    state_group_before: int | None,
    state_group: int | None,
    auth_chain: Sequence[int] | None,
    canonical_json: str,
) -> int:
    relates = event.content.get("m.relates_to")
    relates_to = relation_type = None
    if isinstance(relates, dict) and isinstance(relates.get("event_id"), str) and len(relates["event_id"]) <= 255:
        relates_to = relates["event_id"]
        rel = relates.get("rel_type")
        relation_type = rel[:64] if isinstance(rel, str) else None
    row = EventRow.objects.create(
        event_id=event.event_id,
        room=room,
        type=event.type,
        state_key=event.state_key,
        sender=event.sender,
        depth=event.depth,
        origin_server_ts=event.origin_server_ts,
        received_ts=received_ts,
        json=canonical_json,
        outlier=outlier,
        rejected_reason=rejected_reason,
        soft_failed=soft_failed,
        redacts=event.redacts,
        relates_to=relates_to,
        relation_type=relation_type,
        state_group_before=state_group_before,
        state_group=state_group,
        auth_chain=json.dumps(list(auth_chain)) if auth_chain is not None else None,
    )
    EventEdge.objects.bulk_create([EventEdge(event=row, prev_event_id=p) for p in event.prev_event_ids])
    EventAuthEdge.objects.bulk_create([EventAuthEdge(event=row, auth_event_id=a) for a in event.auth_event_ids])
    return int(row.id)


def set_stream_ordering_and_state_group(nid: int, *, stream_ordering: int | None, state_group: int | None) -> None:
    EventRow.objects.filter(id=nid).update(stream_ordering=stream_ordering, state_group=state_group)


def update_forward_extremities(room: Room, *, remove_event_ids: Iterable[str], add_nid: int | None) -> None:
    remove = list(remove_event_ids)
    if remove:
        ForwardExtremity.objects.filter(room=room, event__event_id__in=remove).delete()
    if add_nid is not None:
        ForwardExtremity.objects.create(room=room, event_id=add_nid)


def has_children(event_id: str) -> bool:
    """Whether any stored event lists ``event_id`` among its prev_events."""
    return EventEdge.objects.filter(prev_event_id=event_id).exists()


def get_auth_chains(nids: Iterable[int]) -> dict[int, list[int]]:
    """Materialised auth chains (state events only; others map to ``[]``)."""
    ids = list(set(nids))
    out: dict[int, list[int]] = {}
    for start in range(0, len(ids), 1000):
        for nid, chain in EventRow.objects.filter(id__in=ids[start : start + 1000]).values_list("id", "auth_chain"):
            out[nid] = json.loads(chain) if chain else []
    return out


def get_prev_event_ids(nid: int) -> list[str]:
    return list(EventEdge.objects.filter(event_id=nid).values_list("prev_event_id", flat=True))


def get_child_event_ids(event_id: str) -> list[str]:
    return list(EventEdge.objects.filter(prev_event_id=event_id).values_list("event__event_id", flat=True))


def count_room_events(room: Room) -> int:
    return EventRow.objects.filter(room=room).count()


def is_forward_extremity(nid: int) -> bool:
    return ForwardExtremity.objects.filter(event_id=nid).exists()


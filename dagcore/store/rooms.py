"""Room rows, the per-room write lock, memberships and the servers in a room."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

from dagcore.models import ForgottenRoom, Room, RoomMembership, RoomServer
from dagcore.store.dialect import advisory_xact_lock
from dagcore.store.sql import fetch_rows


def lock_room_for_writing(room_id: str) -> None:
    """Serialise writers of one room across processes (DESIGN.md §3 step 4).

    PostgreSQL: a transaction-scoped advisory lock keyed by the room. SQLite:
    nothing to do — IMMEDIATE transactions already serialise every writer.
    Must be called inside ``transaction.atomic()``.
    """
    advisory_xact_lock(room_id)


def get_room(room_id: str) -> Room | None:
    return Room.objects.filter(room_id=room_id).first()


def get_room_for_update(room_id: str) -> Room | None:
    """The room row, read after ``lock_room_for_writing`` (so current_state_group is settled).
    Raw SQL: every local event reads it under the room's lock, and compiling the ORM query
    cost more CPU than running it (cProfile of 200 sends: 0.37 ms of 0.5 per call)."""
    rows = fetch_rows(_ROOM_SQL, [room_id])
    if not rows:
        return None
    return _room_of(rows[0])


@dataclass(frozen=True, slots=True)
class ReceivingProbe:
    """What persisting a received event must know about it besides the room row."""

    stored: bool  # the event is stored already (another path got there first)
    has_children: bool  # a stored event cites it as a prev event (it arrives late: backfill)
    has_pending_redactions: bool  # an accepted redaction of it arrived before it
    is_backward_extremity: bool  # it is a gap of the room's timeline we were waiting for


_ROOM_FIELDS = Room._meta.concrete_fields
_ROOM_ATTNAMES = [f.attname for f in _ROOM_FIELDS]
_ROOM_BOOLEANS = {i for i, f in enumerate(_ROOM_FIELDS) if f.get_internal_type() == "BooleanField"}


def _room_of(values: Sequence[Any]) -> Room:
    """A ``Room`` from a raw row of its columns (SQLite answers booleans as 0/1: the ORM
    converts them, raw SQL must)."""
    return Room.from_db(
        connection.alias,
        _ROOM_ATTNAMES,
        [bool(v) if i in _ROOM_BOOLEANS else v for i, v in enumerate(values)],
    )


_ROOM_SQL = (
    "SELECT " + ", ".join(f"r.{f.column}" for f in _ROOM_FIELDS) + " FROM rooms r WHERE r.room_id = %s"
)
_RECEIVING_SQL = (
    "SELECT "
    + ", ".join(f"r.{f.column}" for f in _ROOM_FIELDS)
    + ", EXISTS (SELECT 1 FROM events WHERE event_id = %s)"
    ", EXISTS (SELECT 1 FROM event_edges WHERE prev_event_id = %s)"
    ", EXISTS (SELECT 1 FROM events WHERE room_id = r.id AND redacts = %s AND type = 'm.room.redaction'"
    " AND rejected_reason IS NULL)"
    ", EXISTS (SELECT 1 FROM backward_extremities WHERE room_id = r.id AND event_id = %s)"
    " FROM rooms r WHERE r.room_id = %s"
)


def get_room_for_receiving(room_id: str, event_id: str) -> tuple[Room, ReceivingProbe] | None:
    """The room row (read after ``lock_room_for_writing``) and, in the same statement, the
    :class:`ReceivingProbe` of ``event_id``: one round trip per received event instead of five.
    Raw SQL: this runs for every received event, and compiling the ORM's four subqueries
    took a third of the inbound /send CPU (py-spy, bench/results/README.md)."""
    rows = fetch_rows(_RECEIVING_SQL, [event_id, event_id, event_id, event_id, room_id])
    if not rows:
        return None
    values = rows[0]
    n = len(_ROOM_FIELDS)
    room = _room_of(values[:n])
    stored, children, redactions, gap = (bool(v) for v in values[n:])
    return room, ReceivingProbe(
        stored=stored, has_children=children, has_pending_redactions=redactions, is_backward_extremity=gap
    )


def insert_room(*, room_id: str, room_version: str, creator: str, created_ts: int) -> Room:
    return Room.objects.create(
        room_id=room_id, room_version=room_version, creator=creator, created_ts=created_ts
    )


def set_room_head(
    room: Room, *, forward_extremities: str, extremity_count: int, current_state_group: int | None
) -> None:
    """The room's new forward extremities and current state group, in one in-place row update
    (raw SQL, as :func:`get_room_for_update`: it runs for every event)."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE rooms SET forward_extremities = %s, forward_extremity_count = %s, "
            "current_state_group = %s WHERE id = %s",
            [forward_extremities, extremity_count, current_state_group, room.pk],
        )
    room.forward_extremities = forward_extremities
    room.forward_extremity_count = extremity_count
    room.current_state_group = current_state_group


def set_room_public(room: Room, is_public: bool) -> None:
    room.is_public = is_public
    room.save(update_fields=["is_public"])


def get_membership(room: Room, user_id: str) -> RoomMembership | None:
    return RoomMembership.objects.filter(room=room, user_id=user_id).first()


def get_joined_servers(room: Room) -> list[str]:
    return list(
        RoomServer.objects.filter(room=room, joined_count__gt=0).values_list("server_name", flat=True)
    )


def get_rooms_for_user(user_id: str, memberships: Iterable[str] = ("join",)) -> list[str]:
    return list(
        RoomMembership.objects.filter(user_id=user_id, membership__in=list(memberships)).values_list(
            "room__room_id", flat=True
        )
    )


def get_users_sharing_a_room(*, user_id: str, candidates: Iterable[str]) -> set[str]:
    """The ``candidates`` who share at least one joined room with ``user_id`` (one query)."""
    wanted = sorted(set(candidates))
    if not wanted:
        return set()
    mine = RoomMembership.objects.filter(user_id=user_id, membership="join").values("room_id")
    return set(
        RoomMembership.objects.filter(user_id__in=wanted, membership="join", room_id__in=mine)
        .values_list("user_id", flat=True)
        .distinct()
    )


# --------------------------------------------------------------------------- forgotten rooms


def forget_room(room: Room, user_id: str, *, membership_stream: int) -> None:
    """Mark the room forgotten by the user, as of their current membership (spec: ``/forget``)."""
    ForgottenRoom.objects.update_or_create(
        room=room, user_id=user_id, defaults={"membership_stream": membership_stream}
    )


def get_forgotten_room_ids(user_id: str) -> set[str]:
    """Rooms the user forgot and has not come back to since (two queries)."""
    marks = dict(ForgottenRoom.objects.filter(user_id=user_id).values_list("room_id", "membership_stream"))
    if not marks:
        return set()
    current = {
        nid: (room_id, stream)
        for nid, room_id, stream in RoomMembership.objects.filter(
            user_id=user_id, room_id__in=list(marks)
        ).values_list("room_id", "room__room_id", "stream_ordering")
    }
    return {room_id for nid, (room_id, stream) in current.items() if stream <= marks[nid]}


def is_room_forgotten(room: Room, user_id: str) -> bool:
    row = (
        ForgottenRoom.objects.filter(room=room, user_id=user_id)
        .values_list("membership_stream", flat=True)
        .first()
    )
    if row is None:
        return False
    membership = get_membership(room, user_id)
    return membership is None or membership.stream_ordering <= row


def get_room_nids(room_ids: Iterable[str]) -> dict[str, int]:
    """``room ID -> room nid`` of the rooms this server knows (one query)."""
    ids = list(set(room_ids))
    if not ids:
        return {}
    return dict(Room.objects.filter(room_id__in=ids).values_list("room_id", "id"))

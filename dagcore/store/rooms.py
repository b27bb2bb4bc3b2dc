"""Room rows, the per-room write lock, memberships and the servers in a room."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

from django.db import connection

from dagcore.models import Room, RoomMembership, RoomServer


def lock_room_for_writing(room_id: str) -> None:
    """Serialise writers of one room across processes (DESIGN.md §3 step 4).

    PostgreSQL: a transaction-scoped advisory lock keyed by the room. SQLite:
    nothing to do — IMMEDIATE transactions already serialise every writer.
    Must be called inside ``transaction.atomic()``.
    """
    if connection.vendor != "postgresql":
        return
    key = struct.unpack(">q", hashlib.sha256(room_id.encode()).digest()[:8])[0]
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def get_room(room_id: str) -> Room | None:
    return Room.objects.filter(room_id=room_id).first()


def get_room_for_update(room_id: str) -> Room | None:
    """The room row, read after ``lock_room_for_writing`` (so current_state_group is settled)."""
    return Room.objects.filter(room_id=room_id).first()


def insert_room(*, room_id: str, room_version: str, creator: str, created_ts: int) -> Room:
    return Room.objects.create(
        room_id=room_id, room_version=room_version, creator=creator, created_ts=created_ts
    )


def set_room_current_state_group(room: Room, group_id: int) -> None:
    room.current_state_group = group_id
    room.save(update_fields=["current_state_group"])


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

"""Room aliases, the public room list and content reports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Q

from dagcore.clock import now_ms
from dagcore.models import ContentReport, Room, RoomAlias, RoomServer
from dagcore.store.state import get_current_state_pdus

#: State that describes a room in the public directory (spec: "PublishedRoomsChunk").
SUMMARY_STATE_TYPES = (
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.encryption",
)


# --------------------------------------------------------------------------- aliases


def get_alias(alias: str) -> RoomAlias | None:
    return RoomAlias.objects.filter(alias=alias).first()


def get_aliases_for_room(room_id: str) -> list[str]:
    return list(RoomAlias.objects.filter(room_id=room_id).order_by("alias").values_list("alias", flat=True))


def insert_alias(*, alias: str, room_id: str, creator: str) -> bool:
    """False if the alias exists already (also when created concurrently)."""
    try:
        with transaction.atomic():
            RoomAlias.objects.create(alias=alias, room_id=room_id, creator=creator, created_ts=now_ms())
    except IntegrityError:
        return False
    return True


def delete_alias(alias: str) -> bool:
    deleted, _ = RoomAlias.objects.filter(alias=alias).delete()
    return deleted > 0


def move_aliases(*, from_room_id: str, to_room_id: str) -> list[str]:
    """Point every local alias of one room at another (room upgrades); returns them."""
    aliases = get_aliases_for_room(from_room_id)
    RoomAlias.objects.filter(room_id=from_room_id).update(room_id=to_room_id)
    return aliases


# --------------------------------------------------------------------------- public rooms


@dataclass(frozen=True)
class PublishedRoom:
    room_nid: int
    room_id: str
    joined_members: int


def get_published_rooms() -> list[PublishedRoom]:
    """Published rooms, largest first then by room ID (a stable order for pagination): one query."""
    rows = (
        Room.objects.filter(is_public=True)
        .annotate(joined=Count("memberships", filter=Q(memberships__membership="join")))
        .order_by("-joined", "room_id")
        .values_list("id", "room_id", "joined")
    )
    return [PublishedRoom(nid, rid, int(n)) for nid, rid, n in rows]


def get_room_summaries(room_nids: Iterable[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """``room nid -> event type -> content`` of the summary state of many rooms: one query."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for room_nid, pdus in get_current_state_pdus(room_nids, types=SUMMARY_STATE_TYPES, state_key="").items():
        out[room_nid] = {}
        for pdu in pdus:
            content = pdu.get("content")
            out[room_nid][pdu["type"]] = content if isinstance(content, dict) else {}
    return out


# --------------------------------------------------------------------------- reports


def get_joined_servers_by_room(room_nids: Iterable[int]) -> dict[int, set[str]]:
    """``room nid -> servers with joined members`` (one query), for questions other servers ask."""
    out: dict[int, set[str]] = {}
    rows = RoomServer.objects.filter(room_id__in=list(room_nids), joined_count__gt=0).values_list(
        "room_id", "server_name"
    )
    for nid, server in rows:
        out.setdefault(nid, set()).add(server)
    return out


def insert_report(
    *,
    room_id: str | None,
    event_id: str | None,
    reporter: str,
    reason: str | None,
    score: int | None,
    reported_user_id: str | None = None,
) -> int:
    row = ContentReport.objects.create(
        room_id=room_id,
        event_id=event_id,
        reported_user_id=reported_user_id,
        reporter=reporter,
        reason=reason,
        score=score,
        received_ts=now_ms(),
    )
    return int(row.id)


def get_reports(*, limit: int = 100, unresolved_only: bool = False) -> list[ContentReport]:
    qs = ContentReport.objects.all()
    if unresolved_only:
        qs = qs.filter(resolved_ts__isnull=True)
    return list(qs.order_by("-received_ts")[:limit])

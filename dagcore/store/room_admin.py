"""Reads and writes of the server admins' room operations (``dagcore.actions.room_admin``).

The room list is computed from current state in a fixed number of queries (one per kind of
fact, for every room at once), then sorted and paged by the caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import Length

from dagcore.models import (
    BackwardExtremity,
    BlockedRoom,
    ClientTxn,
    ContentReport,
    CurrentStateEvent,
    Device,
    ForgottenRoom,
    Receipt,
    Room,
    RoomAlias,
    RoomMembership,
    StateGroup,
    StateGroupEntry,
    UnreadCounter,
)
from dagcore.models import Event as EventRow
from dagcore.store.events import Extremity, encode_forward_extremities, get_forward_extremities

#: Current-state types the room list shows: ``(type, content key)``.
SUMMARY_STATE = {
    "m.room.name": "name",
    "m.room.canonical_alias": "alias",
    "m.room.encryption": "algorithm",
    "m.room.join_rules": "join_rule",
    "m.room.guest_access": "guest_access",
    "m.room.history_visibility": "history_visibility",
    "m.room.create": None,
    "m.room.topic": "topic",
    "m.room.avatar": "url",
}


def list_room_ids() -> list[str]:
    return list(Room.objects.order_by("id").values_list("room_id", flat=True))


# --------------------------------------------------------------------------- blocking


def is_room_blocked(room_id: str) -> bool:
    return BlockedRoom.objects.filter(room_id=room_id).exists()


def get_room_block(room_id: str) -> BlockedRoom | None:
    return BlockedRoom.objects.filter(room_id=room_id).first()


def block_room(*, room_id: str, user_id: str, ts: int) -> None:
    BlockedRoom.objects.get_or_create(room_id=room_id, defaults={"user_id": user_id, "blocked_ts": ts})


def unblock_room(room_id: str) -> None:
    BlockedRoom.objects.filter(room_id=room_id).delete()


# --------------------------------------------------------------------------- summaries


@dataclass
class RoomFacts:
    """What the admin room list and details show of one room."""

    nid: int
    room_id: str
    version: str
    creator: str
    public: bool
    created_ts: int
    state_events: int = 0
    joined_members: int = 0
    joined_local_members: int = 0
    invited_members: int = 0
    local_members_any: int = 0
    forward_extremities: int = 0
    events: int | None = None
    state: dict[str, dict[str, Any]] = field(default_factory=dict)


def get_room_facts(
    room_ids: Sequence[str] | None = None, *, with_event_counts: bool = False
) -> list[RoomFacts]:
    """Facts of these rooms (all rooms if ``None``): a handful of queries whatever their number."""
    rooms = Room.objects.all() if room_ids is None else Room.objects.filter(room_id__in=list(room_ids))
    facts = {
        nid: RoomFacts(nid=nid, room_id=rid, version=ver, creator=creator, public=pub, created_ts=ts,
                       forward_extremities=count)
        for nid, rid, ver, creator, pub, ts, count in rooms.values_list(
            "id", "room_id", "room_version", "creator", "is_public", "created_ts", "forward_extremity_count"
        )
    }  # fmt: skip
    if not facts:
        return []
    nids = list(facts)
    for room_nid, n in (
        CurrentStateEvent.objects.filter(room_id__in=nids).values_list("room_id").annotate(n=Count("id"))
    ):
        facts[room_nid].state_events = n
    for room_nid, membership, is_local, n in (
        RoomMembership.objects.filter(room_id__in=nids)
        .values_list("room_id", "membership", "is_local")
        .annotate(n=Count("id"))
    ):
        f = facts[room_nid]
        if membership == "join":
            f.joined_members += n
            if is_local:
                f.joined_local_members += n
        elif membership == "invite":
            f.invited_members += n
    for room_nid, etype, body in CurrentStateEvent.objects.filter(
        room_id__in=nids, type__in=list(SUMMARY_STATE), state_key=""
    ).values_list("room_id", "type", "event__json"):
        try:
            facts[room_nid].state[etype] = dict(json.loads(body).get("content") or {})
        except (ValueError, AttributeError):
            continue
    if with_event_counts:
        for room_nid, n in (
            EventRow.objects.filter(room_id__in=nids).values_list("room_id").annotate(n=Count("id"))
        ):
            facts[room_nid].events = n
    return list(facts.values())


def count_events_by_room(room_ids: Sequence[str]) -> dict[str, int]:
    counts = dict.fromkeys(room_ids, 0)
    rows = (
        EventRow.objects.filter(room__room_id__in=list(room_ids))
        .values_list("room__room_id")
        .annotate(n=Count("id"))
    )
    counts.update({str(room_id): int(n) for room_id, n in rows})
    return counts


def get_room_member_ids(room: Room, memberships: Iterable[str] = ("join",)) -> list[str]:
    return list(
        RoomMembership.objects.filter(room=room, membership__in=list(memberships))
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )


def get_room_member_rows(room: Room) -> list[tuple[str, str, bool, str | None]]:
    """``(user ID, membership, is local, display name)`` of everyone with a membership."""
    return list(
        RoomMembership.objects.filter(room=room)
        .order_by("membership", "user_id")
        .values_list("user_id", "membership", "is_local", "displayname")
    )


def count_local_devices_in_room(room: Room) -> int:
    local = RoomMembership.objects.filter(room=room, membership="join", is_local=True).values("user_id")
    return Device.objects.filter(user__user_id__in=local).count()


def all_local_members_forgot(room: Room) -> bool:
    local = set(RoomMembership.objects.filter(room=room, is_local=True).values_list("user_id", flat=True))
    if not local:
        return False
    forgot = set(
        ForgottenRoom.objects.filter(room=room, user_id__in=list(local)).values_list("user_id", flat=True)
    )
    return forgot == local


# --------------------------------------------------------------------------- forward extremities


@dataclass(frozen=True)
class ExtremityFacts:
    event_id: str
    state_group: int | None
    depth: int
    received_ts: int
    stream_ordering: int | None


def get_extremity_facts(room: Room) -> list[ExtremityFacts]:
    extremities = get_forward_extremities(room)
    rows = {
        nid: (received, stream)
        for nid, received, stream in EventRow.objects.filter(id__in=[e.nid for e in extremities]).values_list(
            "id", "received_ts", "stream_ordering"
        )
    }
    return [
        ExtremityFacts(
            e.event_id, e.state_group, e.depth, rows.get(e.nid, (0, None))[0], rows.get(e.nid, (0, None))[1]
        )
        for e in extremities
    ]


def keep_only_extremity(room: Room, keep: Extremity) -> None:
    """Call with the room's write lock held: its extremities become ``[keep]``."""
    Room.objects.filter(pk=room.pk).update(
        forward_extremities=encode_forward_extremities([keep]), forward_extremity_count=1
    )


def get_event_stream_orderings(nids: Sequence[int]) -> dict[int, int | None]:
    return dict(EventRow.objects.filter(id__in=list(nids)).values_list("id", "stream_ordering"))


# --------------------------------------------------------------------------- removing a room


def delete_room_events_batch(room: Room, *, limit: int = 500) -> int:
    """Delete up to ``limit`` of the room's events (and what cascades from them); how many."""
    nids = list(EventRow.objects.filter(room=room).order_by("-id").values_list("id", "event_id")[:limit])
    if not nids:
        return 0
    ClientTxn.objects.filter(event_id__in=[eid for _nid, eid in nids]).delete()
    # Rows that point at events are dropped first, so the cascade has nothing left to collect.
    ids = [nid for nid, _eid in nids]
    CurrentStateEvent.objects.filter(event_id__in=ids).delete()
    RoomMembership.objects.filter(event_id__in=ids).delete()
    EventRow.objects.filter(id__in=ids).delete()
    return len(nids)


def delete_room_rows(room: Room) -> None:
    """Everything else of the room, then the room row (its events are gone already)."""
    groups = list(StateGroup.objects.filter(room=room).values_list("id", flat=True))
    for start in range(0, len(groups), 500):
        chunk = groups[start : start + 500]
        StateGroupEntry.objects.filter(group_id__in=chunk).delete()
        StateGroup.objects.filter(id__in=chunk).delete()
    for model in (
        BackwardExtremity,
        UnreadCounter,
        Receipt,
        ForgottenRoom,
        RoomMembership,
        CurrentStateEvent,
    ):
        model.objects.filter(room=room).delete()
    Room.objects.filter(pk=room.pk).delete()


def get_local_aliases(room_id: str) -> list[str]:
    return list(RoomAlias.objects.filter(room_id=room_id).order_by("alias").values_list("alias", flat=True))


def delete_aliases(room_id: str) -> list[str]:
    aliases = get_local_aliases(room_id)
    RoomAlias.objects.filter(room_id=room_id).delete()
    return aliases


def count_room_rows(room: Room) -> dict[str, int]:
    return {
        "events": EventRow.objects.filter(room=room).count(),
        "state_groups": StateGroup.objects.filter(room=room).count(),
        "members": RoomMembership.objects.filter(room=room).count(),
    }


def members_still_joined(room: Room, *, local: bool) -> list[str]:
    return list(
        RoomMembership.objects.filter(room=room, membership="join", is_local=local).values_list(
            "user_id", flat=True
        )
    )


# --------------------------------------------------------------------------- reads for admins


def get_room_sizes(*, limit: int) -> list[tuple[str, int]]:
    """Rooms by the length of their events' JSON (largest first): an estimate of what each
    room's history takes in the database, on any database."""

    rows = (
        EventRow.objects.values("room__room_id").annotate(size=Sum(Length("json"))).order_by("-size")[:limit]
    )
    return [(str(r["room__room_id"]), int(r["size"] or 0)) for r in rows]


def list_event_reports(
    *,
    offset: int,
    limit: int,
    newest_first: bool,
    reporter_contains: str | None,
    room_contains: str | None,
    sender: str | None,
) -> tuple[list[ContentReport], int]:
    qs = ContentReport.objects.filter(event_id__isnull=False)
    if reporter_contains:
        qs = qs.filter(reporter__contains=reporter_contains)
    if room_contains:
        qs = qs.filter(room_id__contains=room_contains)
    if sender:
        qs = qs.filter(event_id__in=EventRow.objects.filter(sender=sender).values("event_id"))
    total = qs.count()
    order = ("-received_ts", "-id") if newest_first else ("received_ts", "id")
    return list(qs.order_by(*order)[offset : offset + limit]), total


def list_reports(
    *, kind: str | None = None, unresolved_only: bool = False, limit: int = 200
) -> list[ContentReport]:
    """Every kind of report for the console: ``event``, ``room`` or ``user`` (all if ``None``), newest first."""
    qs = ContentReport.objects.all()
    if kind == "event":
        qs = qs.filter(event_id__isnull=False)
    elif kind == "room":
        qs = qs.filter(event_id__isnull=True, room_id__isnull=False)
    elif kind == "user":
        qs = qs.filter(reported_user_id__isnull=False)
    if unresolved_only:
        qs = qs.filter(resolved_ts__isnull=True)
    return list(qs.order_by("-received_ts", "-id")[:limit])


def get_event_report(report_id: int) -> ContentReport | None:
    return ContentReport.objects.filter(id=report_id).first()


def get_report(report_id: int) -> ContentReport | None:
    return ContentReport.objects.filter(id=report_id).first()


def delete_report(report_id: int) -> None:
    ContentReport.objects.filter(id=report_id).delete()


def resolve_report(report_id: int, *, ts: int) -> None:
    ContentReport.objects.filter(id=report_id).update(resolved_ts=ts)


def get_event_senders(event_ids: Sequence[str]) -> dict[str, str]:
    return dict(EventRow.objects.filter(event_id__in=list(event_ids)).values_list("event_id", "sender"))


def get_shared_room_created_by(*, creator: str, user_id: str) -> str | None:
    """A room ``creator`` made, is joined to, and ``user_id`` is invited to or joined (newest first)."""
    mine = RoomMembership.objects.filter(user_id=creator, membership="join").values("room_id")
    theirs = (
        RoomMembership.objects.filter(user_id=user_id, membership__in=["join", "invite"], room_id__in=mine)
        .filter(room__creator=creator)
        .order_by("-room_id")
        .values_list("room__room_id", flat=True)
        .first()
    )
    return str(theirs) if theirs is not None else None


def list_room_reports(
    *, before_id: int | None, limit: int, reporter: str | None, room_id: str | None
) -> tuple[list[ContentReport], int, int | None]:
    """Room reports of rooms we still hold, newest first from ``before_id`` (inclusive):
    ``(page, total, the next page's first id)``."""
    qs = ContentReport.objects.filter(
        event_id__isnull=True, room_id__isnull=False, reported_user_id__isnull=True
    )
    qs = qs.filter(room_id__in=Room.objects.values("room_id"))
    if reporter:
        qs = qs.filter(reporter=reporter)
    if room_id:
        qs = qs.filter(room_id=room_id)
    total = qs.count()
    if before_id is not None:
        qs = qs.filter(id__lte=before_id)
    rows = list(qs.order_by("-id")[: limit + 1])
    following = rows[limit].id if len(rows) > limit else None
    return rows[:limit], total, following

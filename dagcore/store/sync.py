"""Selectors ``/sync`` builds its answer from: a user's rooms and what changed in them.

Every selector takes all the rooms of a request at once and costs a bounded
number of queries whatever their number (no per-room loop), so an incremental
sync of a user in many quiet rooms costs what one in a few rooms costs.
"Last N events of each of these rooms" is one ``UNION ALL`` of per-room
``ORDER BY ... LIMIT`` subqueries on PostgreSQL (each one an index range scan
of ``events_room_stream``); SQLite, the single-process quick start, runs them
one by one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, Max, Q, QuerySet

from dagcore.models import CurrentStateEvent, RoomMembership
from dagcore.models import Event as EventRow
from dagcore.protocol.events import Event, StateKey
from dagcore.protocol.room_versions import get_room_version
from dagcore.store.events import _FIELDS, StoredEvent, _from_values

#: Subqueries per UNION ALL statement.
UNION_CHUNK = 100


@dataclass(frozen=True, slots=True)
class MembershipInfo:
    """The user's current membership in one room, with what sync needs of the room."""

    room_nid: int
    room_id: str
    room_version: str
    current_state_group: int | None
    membership: str
    #: Stream position of the membership event.
    stream_ordering: int
    event_nid: int
    sender: str


def _timeline_q() -> Q:
    """Events clients are shown: in the timeline, not rejected, outliers or soft-failed."""
    return Q(stream_ordering__isnull=False, soft_failed=False, outlier=False)


def _per_room(room_nids: Iterable[int], build: Callable[[int], QuerySet[Any, Any]]) -> list[Any]:
    """Rows of ``build(room_nid)`` (an ordered, sliced ``values`` query) for every room."""
    nids = list(dict.fromkeys(room_nids))
    if not nids:
        return []
    out: list[Any] = []
    if connection.vendor == "postgresql":
        for start in range(0, len(nids), UNION_CHUNK):
            parts = [build(n) for n in nids[start : start + UNION_CHUNK]]
            qs = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:], all=True)
            out.extend(qs)
    else:
        for n in nids:
            out.extend(build(n))
    return out


# --------------------------------------------------------------------------- memberships


def _membership_rows(qs: QuerySet[RoomMembership, RoomMembership]) -> list[MembershipInfo]:
    rows = qs.values_list(
        "room_id",
        "room__room_id",
        "room__room_version",
        "room__current_state_group",
        "membership",
        "stream_ordering",
        "event_id",
        "event__sender",
    )
    return [MembershipInfo(*r) for r in rows]


def get_user_memberships(user_id: str) -> list[MembershipInfo]:
    """Every room the user has a membership in (one query)."""
    return _membership_rows(RoomMembership.objects.filter(user_id=user_id).order_by("room_id"))


def get_forgotten_room_nids(user_id: str, room_nids: Sequence[int]) -> set[int]:
    """Rooms (of ``room_nids``) the user forgot while their current membership held."""
    from dagcore.models import ForgottenRoom

    if not room_nids:
        return set()
    out = set()
    stream_of = dict(
        RoomMembership.objects.filter(user_id=user_id, room_id__in=list(room_nids)).values_list(
            "room_id", "stream_ordering"
        )
    )
    for room_nid, upto in ForgottenRoom.objects.filter(
        user_id=user_id, room_id__in=list(room_nids)
    ).values_list("room_id", "membership_stream"):
        if stream_of.get(room_nid, 0) <= upto:
            out.add(room_nid)
    return out


def get_first_own_member_event_after(
    user_id: str, room_nids: Sequence[int], after: int
) -> dict[int, StoredEvent]:
    """Per room, the user's first membership event after stream ``after`` (how they came in since)."""

    def build(nid: int) -> QuerySet[Any, Any]:
        return (
            EventRow.objects.filter(
                _timeline_q(), room_id=nid, type="m.room.member", state_key=user_id, stream_ordering__gt=after
            )
            .order_by("stream_ordering")
            .values(*_FIELDS)[:1]
        )

    return {row["room_id"]: _from_values(row) for row in _per_room(room_nids, build)}


# --------------------------------------------------------------------------- timelines


def get_rooms_with_new_events(room_nids: Sequence[int], *, after: int, upto: int) -> dict[int, int]:
    """Rooms with timeline events in ``(after, upto]``: room nid -> newest stream position (one query)."""
    if not room_nids:
        return {}
    rows = (
        EventRow.objects.filter(
            _timeline_q(), room_id__in=list(room_nids), stream_ordering__gt=after, stream_ordering__lte=upto
        )
        .values("room_id")
        .annotate(latest=Max("stream_ordering"))
        .values_list("room_id", "latest")
    )
    return {int(r): int(s) for r, s in rows}


def get_recent_events(
    ranges: Mapping[int, tuple[int | None, int]], *, limit: int, event_q: Q | None = None
) -> dict[int, list[StoredEvent]]:
    """The newest ``limit + 1`` events of each room within its ``(after, upto]`` range, oldest first.

    ``limit + 1`` lets the caller tell whether the timeline was cut (``limited``).
    """

    def build(nid: int) -> QuerySet[Any, Any]:
        after, upto = ranges[nid]
        qs = EventRow.objects.filter(_timeline_q(), room_id=nid, stream_ordering__lte=upto)
        if after is not None:
            qs = qs.filter(stream_ordering__gt=after)
        if event_q is not None:
            qs = qs.filter(event_q)
        return qs.order_by("-stream_ordering").values(*_FIELDS)[: limit + 1]

    out: dict[int, list[StoredEvent]] = {nid: [] for nid in ranges}
    for row in _per_room(ranges, build):
        out[row["room_id"]].append(_from_values(row))
    for events in out.values():
        events.sort(key=lambda e: e.stream_ordering or 0)
    return out


def get_state_groups_at_stream(room_streams: Mapping[int, int]) -> dict[int, int | None]:
    """Per room, the state group after its last event at or before the given stream position."""

    def build(nid: int) -> QuerySet[Any, Any]:
        return (
            EventRow.objects.filter(_timeline_q(), room_id=nid, stream_ordering__lte=room_streams[nid])
            .order_by("-stream_ordering")
            .values("room_id", "state_group")[:1]
        )

    out: dict[int, int | None] = dict.fromkeys(room_streams)
    for row in _per_room(room_streams, build):
        out[row["room_id"]] = row["state_group"]
    return out


def get_events_for_counting(
    starts: Mapping[int, int], *, upto: int, limit: int
) -> dict[int, list[StoredEvent]]:
    """Per room, the newest ``limit`` events in ``(start, upto]``, oldest first."""

    def build(nid: int) -> QuerySet[Any, Any]:
        return (
            EventRow.objects.filter(
                _timeline_q(), room_id=nid, stream_ordering__gt=starts[nid], stream_ordering__lte=upto
            )
            .order_by("-stream_ordering")
            .values(*_FIELDS)[:limit]
        )

    out: dict[int, list[StoredEvent]] = {nid: [] for nid in starts}
    for row in _per_room([n for n, s in starts.items() if s < upto], build):
        out[row["room_id"]].append(_from_values(row))
    for events in out.values():
        events.sort(key=lambda e: e.stream_ordering or 0)
    return out


# --------------------------------------------------------------------------- members and summaries


def get_membership_counts(room_nids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per room, how many users hold each membership (one query)."""
    if not room_nids:
        return {}
    out: dict[int, dict[str, int]] = {nid: {} for nid in room_nids}
    for room_nid, membership, n in (
        RoomMembership.objects.filter(room_id__in=list(room_nids), membership__in=("join", "invite"))
        .values("room_id", "membership")
        .annotate(n=Count("id"))
        .values_list("room_id", "membership", "n")
    ):
        out[room_nid][membership] = int(n)
    return out


def get_heroes(room_nids: Sequence[int], *, exclude_user: str, count: int = 5) -> dict[int, list[str]]:
    """Spec ``m.heroes``: the first members by stream ordering who are joined or invited, other
    than the user; failing those, the ones who left or were banned."""

    def build_active(nid: int) -> QuerySet[Any, Any]:
        return (
            RoomMembership.objects.filter(room_id=nid, membership__in=("join", "invite"))
            .exclude(user_id=exclude_user)
            .order_by("stream_ordering", "user_id")
            .values("room_id", "user_id")[:count]
        )

    out: dict[int, list[str]] = {nid: [] for nid in room_nids}
    for row in _per_room(room_nids, build_active):
        out[row["room_id"]].append(row["user_id"])
    empty = [nid for nid, users in out.items() if not users]
    if empty:

        def build_gone(nid: int) -> QuerySet[Any, Any]:
            return (
                RoomMembership.objects.filter(room_id=nid, membership__in=("leave", "ban"))
                .exclude(user_id=exclude_user)
                .order_by("stream_ordering", "user_id")
                .values("room_id", "user_id")[:count]
            )

        for row in _per_room(empty, build_gone):
            out[row["room_id"]].append(row["user_id"])
    return out


def get_own_displaynames(user_id: str, room_nids: Sequence[int]) -> dict[int, str | None]:
    if not room_nids:
        return {}
    return dict(
        RoomMembership.objects.filter(user_id=user_id, room_id__in=list(room_nids)).values_list(
            "room_id", "displayname"
        )
    )


def get_current_state_for_rooms(
    room_nids: Sequence[int], keys: Sequence[StateKey]
) -> dict[int, dict[StateKey, Event]]:
    """Some current state events (e.g. power levels, create, name) of many rooms: one query."""
    if not room_nids or not keys:
        return {}
    cond = Q()
    for etype, skey in keys:
        cond |= Q(type=etype, state_key=skey)
    out: dict[int, dict[StateKey, Event]] = {}
    rows = (
        CurrentStateEvent.objects.filter(room_id__in=list(room_nids))
        .filter(cond)
        .values_list("room_id", "type", "state_key", "event__event_id", "event__json", "room__room_version")
    )
    for room_nid, etype, skey, event_id, raw, version in rows:
        event = Event(json.loads(raw), get_room_version(version, require_supported=False), event_id)
        out.setdefault(room_nid, {})[(etype, skey)] = event
    return out


def get_joined_user_ids(room_nids: Sequence[int], *, exclude_user: str) -> set[str]:
    if not room_nids:
        return set()
    return set(
        RoomMembership.objects.filter(room_id__in=list(room_nids), membership="join")
        .exclude(user_id=exclude_user)
        .values_list("user_id", flat=True)
        .distinct()
    )


def get_users_sharing_a_room(viewer: str, user_ids: Iterable[str]) -> set[str]:
    """Which of ``user_ids`` are still joined to a room the viewer is joined to (one query)."""
    users = list(set(user_ids))
    if not users:
        return set()
    mine = RoomMembership.objects.filter(user_id=viewer, membership="join").values("room_id")
    return set(
        RoomMembership.objects.filter(user_id__in=users, membership="join", room_id__in=mine)
        .values_list("user_id", flat=True)
        .distinct()
    )


def get_events_before(
    room_nids: Sequence[int], *, before: int | None, limit: int, exclude_sender: str
) -> list[StoredEvent]:
    """The newest ``limit`` events of these rooms before stream ``before`` not sent by ``exclude_sender``.

    Per-room index range scans merged (one UNION), so a busy server's other rooms cost nothing.
    """

    def build(nid: int) -> QuerySet[Any, Any]:
        qs = EventRow.objects.filter(_timeline_q(), room_id=nid).exclude(sender=exclude_sender)
        if before is not None:
            qs = qs.filter(stream_ordering__lt=before)
        return qs.order_by("-stream_ordering").values(*_FIELDS)[:limit]

    rows = sorted(_per_room(room_nids, build), key=lambda r: r["stream_ordering"], reverse=True)[:limit]
    return [_from_values(row) for row in rows]


def get_full_state_ids(groups: Iterable[int]) -> dict[int, dict[StateKey, int]]:
    """The whole state of many state groups: cached ones free, the rest in two queries."""
    from dagcore.models import StateGroupEntry
    from dagcore.store import state as state_store
    from dagcore.store.timeline import _load_chains

    out: dict[int, dict[StateKey, int]] = {}
    missing: list[int] = []
    for g in set(groups):
        cached = state_store._full_state_cache.get(g)
        if cached is not None:
            out[g] = dict(cached)
        else:
            missing.append(g)
    if not missing:
        return out
    chains = _load_chains(missing)
    union = {gid for chain in chains.values() for gid in chain}
    entries: dict[int, list[tuple[str, str, int]]] = {}
    for gid, etype, skey, nid in StateGroupEntry.objects.filter(group_id__in=list(union)).values_list(
        "group_id", "type", "state_key", "event_nid"
    ):
        entries.setdefault(gid, []).append((etype, skey, nid))
    for g in missing:
        state: dict[StateKey, int] = {}
        for gid in chains.get(g, ()):
            for etype, skey, nid in entries.get(gid, ()):
                state[(etype, skey)] = nid
        result = {k: v for k, v in state.items() if v != state_store.REMOVED}
        state_store._full_state_cache.put(g, dict(result))
        out[g] = result
    return out


def get_member_events_between(
    room_nids: Sequence[int], *, after: int, upto: int
) -> list[tuple[int, str, str]]:
    """``(room nid, user ID, membership)`` of member events in ``(after, upto]`` in these rooms, in order.

    Read through the events index, so it costs what the new events cost, not the rooms' sizes.
    """
    if not room_nids:
        return []
    out: list[tuple[int, str, str]] = []
    for room_nid, state_key, raw in (
        EventRow.objects.filter(
            _timeline_q(),
            room_id__in=list(room_nids),
            type="m.room.member",
            stream_ordering__gt=after,
            stream_ordering__lte=upto,
        )
        .order_by("stream_ordering")
        .values_list("room_id", "state_key", "json")
    ):
        content = json.loads(raw).get("content")
        membership = content.get("membership") if isinstance(content, dict) else None
        out.append((int(room_nid), state_key or "", membership if isinstance(membership, str) else "leave"))
    return out


def get_rooms_by_nids(room_nids: Iterable[int]) -> dict[int, Any]:
    from dagcore.models import Room

    return {r.id: r for r in Room.objects.filter(id__in=list(set(room_nids)))}

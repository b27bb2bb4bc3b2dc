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
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.db.models import Q, QuerySet

from dagcore.caching import BoundedCache
from dagcore.models import Event as EventRow
from dagcore.models import ForgottenRoom, Room, RoomMembership
from dagcore.protocol.events import Event, StateKey
from dagcore.protocol.room_versions import get_room_version
from dagcore.store import state as state_store
from dagcore.store.dialect import is_postgres
from dagcore.store.e2e_counts import DEFAULT_ALGORITHMS
from dagcore.store.events import (
    EVENT_COLUMNS,
    EVENT_FIELDS,
    EVENT_TABLES,
    TIMELINE_SQL,
    StoredEvent,
    from_row,
    from_values,
)
from dagcore.store.sql import fetch_many, fetch_rows, in_list
from dagcore.store.streams import STREAMS
from dagcore.store.timeline import EventFilter

#: Subqueries per UNION ALL statement.
UNION_CHUNK = 100

#: Member counts and some current state of rooms, by ``(room nid, current state group, ...)``:
#: both are functions of the room's current state, which a state group ID names for good.
_counts_cache: BoundedCache[tuple[int, int], dict[str, int]] = BoundedCache(
    "sync.membership_counts", maxsize=20_000
)
_room_state_cache: BoundedCache[tuple[int, int, tuple[StateKey, ...]], dict[StateKey, Event]] = BoundedCache(
    "sync.room_state", maxsize=5_000
)
#: "The newest events of room R in stream range (a, b]" of incremental syncs, shared by the
#: syncs of a room's members woken by the same event: events committed in a range never
#: change (their redaction moves the stream past ``b``, so a later sync asks for another
#: range). Only short ranges are kept (the woken case), which bounds the memory used.
_recent_cache: BoundedCache[tuple[int, int | None, int, int], tuple[StoredEvent, ...]] = BoundedCache(
    "sync.recent_events", maxsize=1_000
)
RECENT_CACHE_MAX_EVENTS = 20


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
    #: The user's display name in the room (push rules' ``contains_display_name``).
    displayname: str | None = None


def _timeline_q() -> Q:
    """Events clients are shown: in the timeline, not rejected, outliers or soft-failed."""
    return Q(stream_ordering__isnull=False, soft_failed=False, outlier=False)


def _per_room_sql(room_nids: Iterable[int], build: Callable[[int, list[Any]], str]) -> list[tuple[Any, ...]]:
    """Rows of ``build(room_nid, params)`` (SQL of one ordered, limited SELECT) for every room.

    PostgreSQL: ``UNION ALL`` of the parenthesised subqueries, ``UNION_CHUNK`` per statement;
    SQLite (which takes no ORDER BY/LIMIT inside a compound select): one by one.
    """
    nids = list(dict.fromkeys(room_nids))
    out: list[tuple[Any, ...]] = []
    if is_postgres():
        for start in range(0, len(nids), UNION_CHUNK):
            params: list[Any] = []
            parts = [f"({build(n, params)})" for n in nids[start : start + UNION_CHUNK]]
            out.extend(fetch_rows(" UNION ALL ".join(parts), params))
    else:
        for n in nids:
            params = []
            sql = build(n, params)
            out.extend(fetch_rows(sql, params))
    return out


def _per_room(room_nids: Iterable[int], build: Callable[[int], QuerySet[Any, Any]]) -> list[Any]:
    """Rows of ``build(room_nid)`` (an ordered, sliced ``values`` query) for every room."""
    nids = list(dict.fromkeys(room_nids))
    if not nids:
        return []
    out: list[Any] = []
    if is_postgres():
        for start in range(0, len(nids), UNION_CHUNK):
            parts = [build(n) for n in nids[start : start + UNION_CHUNK]]
            qs = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:], all=True)
            out.extend(qs)
    else:
        for n in nids:
            out.extend(build(n))
    return out


# --------------------------------------------------------------------------- memberships


_MEMBERSHIPS_SQL = (
    "SELECT m.room_id, r.room_id, r.room_version, r.current_state_group, m.membership, "
    "m.stream_ordering, m.event_id, e.sender, m.displayname FROM room_memberships m "
    "JOIN rooms r ON r.id = m.room_id JOIN events e ON e.id = m.event_id "
    "WHERE m.user_id = %s ORDER BY m.room_id"
)
_E2E_COUNTS_SQL = (
    "SELECT 'otk', algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = %s AND device_id = %s "
    "GROUP BY algorithm UNION ALL "
    "SELECT 'fallback', algorithm, 0 FROM e2e_fallback_keys WHERE user_id = %s AND device_id = %s AND NOT used"
)


def get_user_memberships(user_id: str) -> list[MembershipInfo]:
    """Every room the user has a membership in (one query; raw SQL: every /sync starts here)."""
    return [MembershipInfo(*r) for r in fetch_rows(_MEMBERSHIPS_SQL, [user_id])]


def _account_data_query(user_id: str, data_types: Sequence[str]) -> tuple[str, list[Any]]:
    params: list[Any] = [user_id]
    cond = in_list("type", data_types, params)
    return (
        f"SELECT type, content, stream_id, id FROM account_data WHERE user_id = %s AND room_id = '' AND {cond}",
        params,
    )


def _account_data_entries(rows: Iterable[tuple[Any, ...]]) -> dict[str, tuple[Any, int, int]]:
    return {t: (json.loads(content), int(stream_id), int(row_id)) for t, content, stream_id, row_id in rows}


@dataclass(frozen=True)
class SyncStart:
    """What every ``/sync`` reads first (see :func:`get_sync_start`)."""

    positions: dict[str, int]
    memberships: list[MembershipInfo]
    #: ``type -> (content, stream_id, row id)`` of the asked global account data entries.
    account_data: dict[str, tuple[Any, int, int]]
    #: ``device_one_time_keys_count`` and ``device_unused_fallback_key_types`` (with a device).
    e2e_counts: tuple[dict[str, int], list[str]] | None
    #: The user's ``(presence state, last_sync_ts)`` when asked for (None: no row, or not asked).
    presence: tuple[str, int] | None = None


def get_sync_start(
    *, user_id: str, device_id: str | None, account_data_types: Sequence[str], with_presence: bool = False
) -> SyncStart:
    """The stream positions, the user's memberships, some of their global account data,
    their device's key counts and (``with_presence``) their presence: one round trip (the
    reads are pipelined on PostgreSQL).

    The positions are read first: whatever the other reads see is at least that recent.
    """
    queries: list[tuple[str, Sequence[Any]]] = [
        ("SELECT name, position FROM stream_counters", []),
        (_MEMBERSHIPS_SQL, [user_id]),
        _account_data_query(user_id, account_data_types),
    ]
    if device_id is not None:
        queries.append((_E2E_COUNTS_SQL, [user_id, device_id, user_id, device_id]))
    if with_presence:
        queries.append(("SELECT state, last_sync_ts FROM presence WHERE user_id = %s", [user_id]))
    results = fetch_many(*queries)
    positions = dict.fromkeys(STREAMS, 0)
    positions.update({str(name): int(position) for name, position in results[0]})
    presence_rows = results[-1] if with_presence else []
    return SyncStart(
        positions=positions,
        memberships=[MembershipInfo(*r) for r in results[1]],
        account_data=_account_data_entries(results[2]),
        e2e_counts=_e2e_counts(results[3]) if device_id is not None else None,
        presence=(str(presence_rows[0][0]), int(presence_rows[0][1])) if presence_rows else None,
    )


def get_forgotten_room_nids(user_id: str, room_nids: Sequence[int]) -> set[int]:
    """Rooms (of ``room_nids``) the user forgot while their current membership held."""
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
        first: QuerySet[Any, Any] = (
            EventRow.objects.filter(
                _timeline_q(), room_id=nid, type="m.room.member", state_key=user_id, stream_ordering__gt=after
            )
            .order_by("stream_ordering")
            .values(*EVENT_FIELDS)[:1]
        )
        return first

    return {row["room_id"]: from_values(row) for row in _per_room(room_nids, build)}


# --------------------------------------------------------------------------- timelines


def get_rooms_with_new_events(room_nids: Sequence[int], *, after: int, upto: int) -> dict[int, int]:
    """Rooms with timeline events in ``(after, upto]``: room nid -> newest stream position (one query)."""
    if not room_nids:
        return {}
    params: list[Any] = []
    cond = in_list("e.room_id", list(room_nids), params)
    params += [after, upto]
    rows = fetch_rows(
        f"SELECT e.room_id, MAX(e.stream_ordering) FROM events e WHERE {cond} "
        f"AND e.stream_ordering > %s AND e.stream_ordering <= %s AND {TIMELINE_SQL} GROUP BY e.room_id",
        params,
    )
    return {int(r): int(s) for r, s in rows}


def _recent_sql(nid: int, after: int | None, upto: int, limit: int, params: list[Any]) -> str:
    params += [nid, upto]
    sql = f"SELECT {EVENT_COLUMNS} FROM {EVENT_TABLES} WHERE e.room_id = %s AND e.stream_ordering <= %s"
    if after is not None:
        sql += " AND e.stream_ordering > %s"
        params.append(after)
    params.append(limit)
    return sql + f" AND {TIMELINE_SQL} ORDER BY e.stream_ordering DESC LIMIT %s"


@dataclass(frozen=True)
class TimelineFilter:
    """What a sync's timeline query filters in SQL: the filter's types and senders, and the
    ignored users' events other than state (spec "Ignoring Users": state events still show)."""

    events: EventFilter = field(default_factory=EventFilter)
    ignored_senders: frozenset[str] = frozenset()

    @cached_property
    def _q(self) -> Q | None:
        q = self.events.as_q()
        if self.ignored_senders:
            q &= ~Q(sender__in=sorted(self.ignored_senders), state_key__isnull=True)
        return q if q else None

    @property
    def filters_anything(self) -> bool:
        """False when every timeline event passes (then answers can be shared between syncs)."""
        return self._q is not None


def get_recent_events(
    ranges: Mapping[int, tuple[int | None, int]], *, limit: int, timeline_filter: TimelineFilter | None = None
) -> dict[int, list[StoredEvent]]:
    """The newest ``limit + 1`` events of each room within its ``(after, upto]`` range, oldest first.

    ``limit + 1`` lets the caller tell whether the timeline was cut (``limited``).
    Without a filter that filters anything, a room's answer is shared (in-process) with
    the other syncs asking for the same range — the members of a room woken by the same event.
    """
    if timeline_filter is not None and timeline_filter._q is not None:
        return _get_recent_events_filtered(ranges, limit=limit, event_q=timeline_filter._q)
    out: dict[int, list[StoredEvent]] = {}
    missing: dict[int, tuple[int | None, int]] = {}
    for nid, (after, upto) in ranges.items():
        cached = _recent_cache.get((nid, after, upto, limit))
        if cached is not None:
            out[nid] = list(cached)
        else:
            missing[nid] = (after, upto)
            out[nid] = []
    if not missing:
        return out
    if is_postgres():
        rows = _recent_rows_lateral(missing, limit + 1)
    else:
        rows = _per_room_sql(missing, lambda nid, params: _recent_sql(nid, *missing[nid], limit + 1, params))
    for row in rows:
        out[row[4]].append(from_row(row))
    for nid, (after, upto) in missing.items():
        events = out[nid]
        events.sort(key=lambda e: e.stream_ordering or 0)
        # Quiet rooms are not worth remembering (a user may be in thousands), long ranges neither.
        if after is not None and 0 < len(events) <= RECENT_CACHE_MAX_EVENTS:
            _recent_cache.put((nid, after, upto, limit), tuple(events))
    return out


#: Lower bound standing for "no lower bound" in the LATERAL query's ``after`` column.
_NO_LOWER_BOUND = -(2**62)


def _recent_rows_lateral(ranges: Mapping[int, tuple[int | None, int]], n: int) -> list[tuple[Any, ...]]:
    """PostgreSQL: the newest ``n`` events of each room in its range, one statement for any
    number of rooms (a LATERAL index range scan of ``events_room_stream`` per room)."""
    nids = list(ranges)
    afters = [_NO_LOWER_BOUND if ranges[nid][0] is None else ranges[nid][0] for nid in nids]
    uptos = [ranges[nid][1] for nid in nids]
    return fetch_rows(
        "SELECT x.* FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS t(rid, after, upto) "
        f"CROSS JOIN LATERAL (SELECT {EVENT_COLUMNS} FROM {EVENT_TABLES} WHERE e.room_id = t.rid "
        f"AND e.stream_ordering > t.after AND e.stream_ordering <= t.upto AND {TIMELINE_SQL} "
        "ORDER BY e.stream_ordering DESC LIMIT %s) AS x",
        [nids, afters, uptos, n],
    )


def get_new_timelines(ranges: Mapping[int, tuple[int, int]], *, limit: int) -> dict[int, list[StoredEvent]]:
    """For an incremental sync: the newest ``limit + 1`` events of each room in its ``(after, upto]``
    range (oldest first), only for rooms that have any.

    PostgreSQL finds the rooms with news and reads their timelines in one statement; SQLite
    asks which rooms have news first, then reads those.
    """
    if not ranges:
        return {}
    if not is_postgres():
        news = get_rooms_with_new_events(
            list(ranges),
            after=min(after for after, _ in ranges.values()),
            upto=max(upto for _, upto in ranges.values()),
        )
        ranges = {nid: r for nid, r in ranges.items() if nid in news}
    found = get_recent_events(dict(ranges), limit=limit)
    return {nid: events for nid, events in found.items() if events}


def _get_recent_events_filtered(
    ranges: Mapping[int, tuple[int | None, int]], *, limit: int, event_q: Q
) -> dict[int, list[StoredEvent]]:
    def build(nid: int) -> QuerySet[Any, Any]:
        after, upto = ranges[nid]
        qs = EventRow.objects.filter(_timeline_q(), room_id=nid, stream_ordering__lte=upto)
        if after is not None:
            qs = qs.filter(stream_ordering__gt=after)
        qs = qs.filter(event_q)
        page: QuerySet[Any, Any] = qs.order_by("-stream_ordering").values(*EVENT_FIELDS)[: limit + 1]
        return page

    out: dict[int, list[StoredEvent]] = {nid: [] for nid in ranges}
    for row in _per_room(ranges, build):
        out[row["room_id"]].append(from_values(row))
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
    out: dict[int, list[StoredEvent]] = {nid: [] for nid in starts}
    wanted = [n for n, s in starts.items() if s < upto]
    for row in _per_room_sql(wanted, lambda nid, params: _recent_sql(nid, starts[nid], upto, limit, params)):
        out[row[4]].append(from_row(row))
    for events in out.values():
        events.sort(key=lambda e: e.stream_ordering or 0)
    return out


# --------------------------------------------------------------------------- members and summaries


def get_membership_counts(
    room_nids: Sequence[int], *, state_groups: Mapping[int, int | None] | None = None
) -> dict[int, dict[str, int]]:
    """Per room, how many users hold each membership (``join``, ``invite``): one query at most.

    ``state_groups`` (room nid -> the current state group the caller saw) lets rooms whose
    state has not changed since an earlier call be answered from memory.
    """
    if not room_nids:
        return {}
    out: dict[int, dict[str, int]] = {}
    missing: list[int] = []
    for nid in dict.fromkeys(room_nids):
        group = state_groups.get(nid) if state_groups is not None else None
        cached = _counts_cache.get((nid, group)) if group is not None else None
        if cached is not None:
            out[nid] = dict(cached)
        else:
            missing.append(nid)
    if not missing:
        return out
    params: list[Any] = []
    cond = in_list("r.id", missing, params)
    # The state group comes from the same statement (one snapshot), so it names these counts.
    fetched: dict[int, tuple[int | None, dict[str, int]]] = {}
    for room_nid, group, membership, n in fetch_rows(
        "SELECT r.id, r.current_state_group, m.membership, COUNT(m.id) FROM rooms r "
        "LEFT JOIN room_memberships m ON m.room_id = r.id AND m.membership IN ('join', 'invite') "
        f"WHERE {cond} GROUP BY r.id, r.current_state_group, m.membership",
        params,
    ):
        counts = fetched.setdefault(room_nid, (group, {}))[1]
        if membership is not None:
            counts[membership] = int(n)
    for nid in missing:
        group, counts = fetched.get(nid, (None, {}))
        if group is not None:
            _counts_cache.put((nid, group), dict(counts))
        out[nid] = counts
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
    room_nids: Sequence[int],
    keys: Sequence[StateKey],
    *,
    state_groups: Mapping[int, int | None] | None = None,
) -> dict[int, dict[StateKey, Event]]:
    """Some current state events (e.g. power levels, create, name) of many rooms: one query at most.

    ``state_groups`` as for :func:`get_membership_counts`.
    """
    if not room_nids or not keys:
        return {}
    wanted = tuple(dict.fromkeys(keys))
    out: dict[int, dict[StateKey, Event]] = {}
    missing: list[int] = []
    for nid in dict.fromkeys(room_nids):
        group = state_groups.get(nid) if state_groups is not None else None
        cached = _room_state_cache.get((nid, group, wanted)) if group is not None else None
        if cached is not None:
            if cached:
                out[nid] = dict(cached)
        else:
            missing.append(nid)
    if not missing:
        return out
    params: list[Any] = []
    key_cond = " OR ".join(["(c.type = %s AND c.state_key = %s)"] * len(wanted))
    for etype, skey in wanted:
        params += [etype, skey]
    cond = in_list("r.id", missing, params)
    fetched: dict[int, tuple[int | None, dict[StateKey, Event]]] = {}
    # Rooms LEFT JOIN their matching state: one snapshot gives the events and the group they belong to.
    for room_nid, group, version, etype, skey, event_id, raw in fetch_rows(
        "SELECT r.id, r.current_state_group, r.room_version, c.type, c.state_key, e.event_id, e.json "
        f"FROM rooms r LEFT JOIN current_state_events c ON c.room_id = r.id AND ({key_cond}) "
        f"LEFT JOIN events e ON e.id = c.event_id WHERE {cond}",
        params,
    ):
        state = fetched.setdefault(room_nid, (group, {}))[1]
        if etype is not None and raw is not None:
            event = Event(json.loads(raw), get_room_version(version, require_supported=False), event_id)
            state[(etype, skey)] = event
    for nid in missing:
        group, state = fetched.get(nid, (None, {}))
        if group is not None:
            _room_state_cache.put((nid, group, wanted), dict(state))
        if state:
            out[nid] = state
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


def get_events_before(
    room_nids: Sequence[int],
    *,
    before: int | None,
    limit: int,
    exclude_sender: str | None = None,
    types: Sequence[str] | None = None,
) -> list[StoredEvent]:
    """The newest ``limit`` events of these rooms before stream ``before`` (not sent by
    ``exclude_sender``; of ``types`` only, if given).

    Per-room index range scans merged (one UNION), so a busy server's other rooms cost nothing.
    """

    def build(nid: int) -> QuerySet[Any, Any]:
        qs = EventRow.objects.filter(_timeline_q(), room_id=nid)
        if exclude_sender is not None:
            qs = qs.exclude(sender=exclude_sender)
        if types is not None:
            qs = qs.filter(type__in=list(types))
        if before is not None:
            qs = qs.filter(stream_ordering__lt=before)
        page: QuerySet[Any, Any] = qs.order_by("-stream_ordering").values(*EVENT_FIELDS)[:limit]
        return page

    rows = sorted(_per_room(room_nids, build), key=lambda r: r["stream_ordering"], reverse=True)[:limit]
    return [from_values(row) for row in rows]


def get_full_state_ids(groups: Iterable[int]) -> dict[int, dict[StateKey, int]]:
    """The whole state of many state groups: cached ones free, the rest in two queries."""
    return state_store.get_full_state_ids_of_groups(groups)


def get_member_events_between(
    room_nids: Sequence[int], *, after: int, upto: int
) -> list[tuple[int, str, str]]:
    """``(room nid, user ID, membership)`` of member events in ``(after, upto]`` in these rooms, in order.

    Read through the events index, so it costs what the new events cost, not the rooms' sizes.
    """
    if not room_nids:
        return []
    params: list[Any] = []
    cond = in_list("e.room_id", list(room_nids), params)
    params += [after, upto]
    out: list[tuple[int, str, str]] = []
    for room_nid, state_key, raw in fetch_rows(
        f"SELECT e.room_id, e.state_key, e.json FROM events e WHERE {cond} AND e.type = 'm.room.member' "
        f"AND e.stream_ordering > %s AND e.stream_ordering <= %s AND {TIMELINE_SQL} ORDER BY e.stream_ordering",
        params,
    ):
        content = json.loads(raw).get("content")
        membership = content.get("membership") if isinstance(content, dict) else None
        out.append((int(room_nid), state_key or "", membership if isinstance(membership, str) else "leave"))
    return out


def _e2e_counts(rows: Iterable[tuple[Any, ...]]) -> tuple[dict[str, int], list[str]]:
    counts = dict.fromkeys(DEFAULT_ALGORITHMS, 0)
    fallback: list[str] = []
    for kind, algorithm, n in rows:
        if kind == "otk":
            counts[algorithm] = int(n)
        else:
            fallback.append(algorithm)
    return counts, sorted(fallback)


def get_rooms_by_nids(room_nids: Iterable[int]) -> dict[int, Any]:
    return {r.id: r for r in Room.objects.filter(id__in=list(set(room_nids)))}

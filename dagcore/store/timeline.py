"""Reading a room's timeline: pagination, state at many events at once, relations, members.

Every selector here costs a bounded number of queries whatever the number of
events asked for (no N+1): /messages, /context, /relations and /sync call them
on pages of up to 1000 events.

Topological keys: an event's position in its room is ``(depth, stream_ordering)``;
room pagination tokens (``dagcore.sync.tokens.RoomToken``) carry such a key. A key
names the point *just after* that event, so "events before key K" are those
with ``(depth, stream) <= K``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Max, Q, QuerySet

from dagcore.caching import BoundedCache
from dagcore.models import CurrentStateEvent, Room, RoomMembership
from dagcore.models import Event as EventRow
from dagcore.protocol.events import StateKey
from dagcore.store import state as state_store
from dagcore.store.events import (
    EVENT_COLUMNS,
    EVENT_FIELDS,
    EVENT_TABLES,
    TIMELINE_SQL,
    StoredEvent,
    from_row,
    from_values,
    get_events_by_ids,
)
from dagcore.store.sql import fetch_rows, in_list

#: A position in one room's topological order: ``(depth, stream_ordering)``.
TopoKey = tuple[int, int]

#: Relation types the server bundles into ``unsigned.m.relations`` (spec: "Aggregations of child events").
BUNDLED_RELATIONS = ("m.thread", "m.replace", "m.reference")


# --------------------------------------------------------------------------- filters


def _glob_q(column: str, patterns: Iterable[str]) -> Q:
    """``types``/``senders`` entries; ``*`` matches any run of characters (spec: "Filtering")."""
    exact = [p for p in patterns if "*" not in p]
    q = Q(**{f"{column}__in": exact}) if exact else Q(pk__in=[])
    for pattern in patterns:
        if "*" in pattern:
            regex = "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"
            q |= Q(**{f"{column}__regex": regex})
    return q


@dataclass(frozen=True)
class EventFilter:
    """The parts of a ``RoomEventFilter`` applied in SQL (spec: "Filtering")."""

    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()

    def as_q(self) -> Q:
        q = Q()
        if self.types is not None:
            q &= _glob_q("type", self.types)
        if self.not_types:
            q &= ~_glob_q("type", self.not_types)
        if self.senders is not None:
            q &= Q(sender__in=list(self.senders))
        if self.not_senders:
            q &= ~Q(sender__in=list(self.not_senders))
        return q


def _timeline_rows(room: Room) -> Q:
    """Events clients may be shown: in the room's timeline, not rejected or soft-failed."""
    return Q(room=room, stream_ordering__isnull=False, soft_failed=False, outlier=False)


def _before(key: TopoKey) -> Q:
    return Q(depth__lt=key[0]) | Q(depth=key[0], stream_ordering__lte=key[1])


def _after(key: TopoKey) -> Q:
    return Q(depth__gt=key[0]) | Q(depth=key[0], stream_ordering__gt=key[1])


def _topological_page(
    qs: QuerySet[EventRow],
    *,
    from_key: TopoKey | None,
    direction: str,
    limit: int,
    to_key: TopoKey | None,
    max_stream: int | None,
) -> list[StoredEvent]:
    """Up to ``limit`` rows of ``qs`` walked from ``from_key`` towards ``to_key``: "b" back
    (newest first), "f" forward (oldest first); none after stream position ``max_stream``."""
    if max_stream is not None:
        qs = qs.filter(stream_ordering__lte=max_stream)
    if direction == "b":
        if from_key is not None:
            qs = qs.filter(_before(from_key))
        if to_key is not None:
            qs = qs.filter(_after(to_key))
        qs = qs.order_by("-depth", "-stream_ordering")
    else:
        if from_key is not None:
            qs = qs.filter(_after(from_key))
        if to_key is not None:
            qs = qs.filter(_before(to_key))
        qs = qs.order_by("depth", "stream_ordering")
    return [from_values(row) for row in qs.values(*EVENT_FIELDS)[:limit]]


# --------------------------------------------------------------------------- pagination


def paginate_room_events(
    room: Room,
    *,
    from_key: TopoKey | None,
    direction: str,
    limit: int,
    to_key: TopoKey | None = None,
    event_filter: EventFilter | None = None,
    max_stream: int | None = None,
) -> list[StoredEvent]:
    """One page of the room's timeline in topological order, from ``from_key``.

    ``direction`` "b" walks back (events before ``from_key``, newest first),
    "f" forward (events after it, oldest first); ``None`` means the room's end
    (for "b") or start (for "f"). ``to_key`` bounds the walk; ``max_stream``
    hides events after a stream position (a user who left sees no further).
    One query.
    """
    if event_filter is None or not event_filter.as_q():
        return _paginate_unfiltered(
            room, from_key=from_key, direction=direction, limit=limit, to_key=to_key, max_stream=max_stream
        )
    qs = EventRow.objects.filter(_timeline_rows(room))
    if event_filter is not None:
        qs = qs.filter(event_filter.as_q())
    return _topological_page(
        qs, from_key=from_key, direction=direction, limit=limit, to_key=to_key, max_stream=max_stream
    )


def _paginate_unfiltered(
    room: Room,
    *,
    from_key: TopoKey | None,
    direction: str,
    limit: int,
    to_key: TopoKey | None,
    max_stream: int | None,
) -> list[StoredEvent]:
    """``paginate_room_events`` without an event filter, in raw SQL (every /messages page).

    Keys compare as row values, ``(depth, stream_ordering)``: the ``events_room_topo`` index order.
    """
    params: list[Any] = [room.pk]
    sql = f"SELECT {EVENT_COLUMNS} FROM {EVENT_TABLES} WHERE e.room_id = %s AND {TIMELINE_SQL}"
    if max_stream is not None:
        sql += " AND e.stream_ordering <= %s"
        params.append(max_stream)
    # "b": before from_key (inclusive: a key names the point just after its event), after to_key.
    bounds = ((from_key, "<="), (to_key, ">")) if direction == "b" else ((from_key, ">"), (to_key, "<="))
    for key, op in bounds:
        if key is not None:
            sql += f" AND (e.depth, e.stream_ordering) {op} (%s, %s)"
            params += [key[0], key[1]]
    order = "DESC" if direction == "b" else "ASC"
    sql += f" ORDER BY e.depth {order}, e.stream_ordering {order} LIMIT %s"
    params.append(limit)
    return [from_row(r) for r in fetch_rows(sql, params)]


def get_topological_key_at_stream(room: Room, stream: int) -> TopoKey | None:
    """The key of the room's last event at or before stream position ``stream`` (a sync token).

    ``None`` when the room had no events by then.
    """
    rows = fetch_rows(
        f"SELECT e.depth, e.stream_ordering FROM events e WHERE e.room_id = %s AND {TIMELINE_SQL} "
        "AND e.stream_ordering <= %s ORDER BY e.stream_ordering DESC LIMIT 1",
        [room.pk, stream],
    )
    return (int(rows[0][0]), int(rows[0][1] or 0)) if rows else None


def get_room_end_key(room: Room) -> TopoKey | None:
    rows = fetch_rows(
        f"SELECT e.depth, e.stream_ordering FROM events e WHERE e.room_id = %s AND {TIMELINE_SQL} "
        "ORDER BY e.depth DESC, e.stream_ordering DESC LIMIT 1",
        [room.pk],
    )
    return (int(rows[0][0]), int(rows[0][1] or 0)) if rows else None


def get_room_event(room: Room, event_id: str) -> StoredEvent | None:
    """A timeline event of this room (not an outlier, rejected or soft-failed one)."""
    rows = fetch_rows(
        f"SELECT {EVENT_COLUMNS} FROM {EVENT_TABLES} WHERE e.event_id = %s AND e.room_id = %s AND {TIMELINE_SQL}",
        [event_id, room.pk],
    )
    return from_row(rows[0]) if rows else None


def get_event_closest_to_ts(
    room: Room, *, ts: int, direction: str, max_stream: int | None
) -> StoredEvent | None:
    """The first event at or after ``ts`` ("f"), or the last at or before it ("b")."""
    qs = EventRow.objects.filter(_timeline_rows(room))
    if max_stream is not None:
        qs = qs.filter(stream_ordering__lte=max_stream)
    if direction == "f":
        qs = qs.filter(origin_server_ts__gte=ts).order_by("origin_server_ts", "stream_ordering")
    else:
        qs = qs.filter(origin_server_ts__lte=ts).order_by("-origin_server_ts", "-stream_ordering")
    row = qs.values(*EVENT_FIELDS).first()
    return from_values(row) if row else None


# --------------------------------------------------------------------------- state at many events


def get_state_ids_at_groups(
    wanted: Mapping[int, Iterable[StateKey]],
) -> dict[int, dict[StateKey, int]]:
    """For each state group, the event nids at the asked keys: two queries at most, any number of groups."""
    wanted = {g: list(keys) for g, keys in wanted.items()}
    all_keys = {k for keys in wanted.values() for k in keys}
    if not wanted or not all_keys:
        return {g: {} for g in wanted}
    chains = state_store.get_state_group_chains(wanted)
    union = sorted({gid for chain in chains.values() for gid in chain})
    entries: dict[int, dict[StateKey, int]] = {}
    if union:
        params: list[Any] = []
        group_cond = in_list("group_id", union, params)
        key_cond = " OR ".join(["(type = %s AND state_key = %s)"] * len(all_keys))
        for etype, skey in all_keys:
            params += [etype, skey]
        # Raw SQL: /messages, /context and /sync ask this for every page of state events.
        for gid, etype, skey, nid in fetch_rows(
            f"SELECT group_id, type, state_key, event_nid FROM state_group_entries WHERE {group_cond} "
            f"AND ({key_cond})",
            params,
        ):
            entries.setdefault(gid, {})[(etype, skey)] = nid
    out: dict[int, dict[StateKey, int]] = {}
    for group, keys in wanted.items():
        found: dict[StateKey, int] = {}
        chain = chains.get(group, ())
        for key in keys:
            # The newest group of the chain holding the key wins.
            for gid in reversed(chain):
                hit = entries.get(gid, {}).get(key)
                if hit is not None:
                    if hit != state_store.REMOVED:
                        found[key] = hit
                    break
        out[group] = found
    return out


# --------------------------------------------------------------------------- annotations


@dataclass
class RelationSummary:
    """What ``unsigned.m.relations`` needs for a set of parent events."""

    #: parent -> (count of thread events, latest thread event, whether the user took part)
    threads: dict[str, tuple[int, StoredEvent, bool]] = field(default_factory=dict)
    #: parent -> its most recent valid edit
    edits: dict[str, StoredEvent] = field(default_factory=dict)
    #: parent -> IDs of events referencing it
    references: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _RelationData:
    """The user-independent part of a ``RelationSummary``."""

    #: parent -> (count of thread events, latest thread event, senders of thread events)
    threads: dict[str, tuple[int, StoredEvent, frozenset[str]]]
    edits: dict[str, StoredEvent]
    references: dict[str, list[str]]


#: Relation data by ``(parent event IDs, as_of)``: the members of a room woken by one event
#: all ask for that event's relations at the same stream position. Only small sets of
#: parents are kept (the woken case), which bounds the memory used.
_relations_cache: BoundedCache[tuple[frozenset[str], int], _RelationData] = BoundedCache(
    "timeline.relations", maxsize=2_000
)
RELATIONS_CACHE_MAX_PARENTS = 20


def get_relation_summaries(
    parents: Sequence[StoredEvent], *, user_id: str | None, as_of: int | None = None
) -> RelationSummary:
    """Bundled aggregations for ``parents`` (spec: "Server-side aggregation of child events").

    One query finds which parents have children at all; threads and edits cost
    one more query each when present. With ``as_of`` (the caller's events stream
    position) the answer found for the same parents at that position, in this
    process, is reused: it holds every child up to ``as_of`` at least.
    """
    ids = [p.event_id for p in parents]
    if not ids:
        return RelationSummary()
    key = (frozenset(ids), as_of) if as_of is not None and len(ids) <= RELATIONS_CACHE_MAX_PARENTS else None
    data = _relations_cache.get(key) if key is not None else None
    if data is None:
        data = _load_relation_data(parents)
        if key is not None:
            _relations_cache.put(key, data)
    by_id = {p.event_id: p for p in parents}
    summary = RelationSummary(
        edits=dict(data.edits), references={k: list(v) for k, v in data.references.items()}
    )
    for parent, (count, latest, senders) in data.threads.items():
        participated = user_id is not None and (by_id[parent].event.sender == user_id or user_id in senders)
        summary.threads[parent] = (count, latest, participated)
    return summary


def _load_relation_data(parents: Sequence[StoredEvent]) -> _RelationData:
    ids = [p.event_id for p in parents]
    references: dict[str, list[str]] = {}
    params: list[Any] = []
    cond = in_list("relates_to", ids, params)
    rel_cond = in_list("relation_type", BUNDLED_RELATIONS, params)
    room_cond = in_list("room_id", sorted({p.room_nid for p in parents}), params)
    # Raw SQL: every /sync and /messages page asks this (an index scan of events_relates_to).
    children = fetch_rows(
        "SELECT relates_to, relation_type, event_id, sender, stream_ordering, origin_server_ts, type, "
        f"room_id FROM events WHERE {cond} AND {rel_cond} AND {room_cond} "
        "AND stream_ordering IS NOT NULL AND NOT soft_failed AND redacted_by IS NULL ORDER BY stream_ordering",
        params,
    )
    by_id = {p.event_id: p for p in parents}
    threads: dict[str, list[tuple[str, str, int]]] = {}
    edits: dict[str, list[tuple[int, str, str, str]]] = {}
    for parent, rel, event_id, sender, stream, ts, etype, room_nid in children:
        if parent is None or stream is None or by_id[parent].room_nid != room_nid:
            continue  # a child must be in its parent's room
        if rel == "m.thread":
            threads.setdefault(parent, []).append((event_id, sender, stream))
        elif rel == "m.replace":
            edits.setdefault(parent, []).append((ts, event_id, sender, etype))
        else:
            references.setdefault(parent, []).append(event_id)
    latest_ids: dict[str, str] = {}
    for parent, items in threads.items():
        latest_ids[parent] = items[-1][0]
    edit_ids: dict[str, str] = {}
    for parent, candidates in edits.items():
        original = by_id[parent].event
        relates = original.content.get("m.relates_to")
        # spec "Validity of replacement events": same sender, same type, no state_key,
        # and an edit of an edit is not valid.
        if original.state_key is not None or (
            isinstance(relates, dict) and relates.get("rel_type") == "m.replace"
        ):
            continue
        valid = [e for e in candidates if e[2] == original.sender and e[3] == original.type]
        if valid:
            # "the most recent one by origin_server_ts, ties broken by event_id lexicographically".
            edit_ids[parent] = max(valid)[1]
    thread_data: dict[str, tuple[int, StoredEvent, frozenset[str]]] = {}
    edit_data: dict[str, StoredEvent] = {}
    wanted = set(latest_ids.values()) | set(edit_ids.values())
    if wanted:
        rows = get_events_by_ids(wanted)
        for parent, eid in latest_ids.items():
            if eid in rows:
                items = threads[parent]
                thread_data[parent] = (len(items), rows[eid], frozenset(s for _, s, _ in items))
        for parent, eid in edit_ids.items():
            if eid in rows:
                edit_data[parent] = rows[eid]
    return _RelationData(thread_data, edit_data, references)


def get_redaction_events(redaction_ids: Iterable[str]) -> dict[str, StoredEvent]:
    ids = [i for i in set(redaction_ids) if i]
    if not ids:
        return {}
    return {
        r["event_id"]: from_values(r) for r in EventRow.objects.filter(event_id__in=ids).values(*EVENT_FIELDS)
    }


# --------------------------------------------------------------------------- relations and threads


def paginate_relations(
    room: Room,
    *,
    parent_ids: Sequence[str],
    rel_type: str | None,
    event_type: str | None,
    from_key: TopoKey | None,
    direction: str,
    limit: int,
    to_key: TopoKey | None = None,
    max_stream: int | None = None,
) -> list[StoredEvent]:
    """Children of ``parent_ids`` in topological order (one query)."""
    qs = EventRow.objects.filter(_timeline_rows(room), relates_to__in=list(parent_ids))
    if rel_type is not None:
        qs = qs.filter(relation_type=rel_type)
    if event_type is not None:
        qs = qs.filter(type=event_type)
    return _topological_page(
        qs, from_key=from_key, direction=direction, limit=limit, to_key=to_key, max_stream=max_stream
    )


def get_child_ids(room: Room, parent_ids: Sequence[str]) -> list[str]:
    """IDs of the events relating to any of ``parent_ids`` (for recursive /relations)."""
    return list(
        EventRow.objects.filter(_timeline_rows(room), relates_to__in=list(parent_ids)).values_list(
            "event_id", flat=True
        )
    )


def list_threads(
    room: Room,
    *,
    participant: str | None,
    before_stream: int | None,
    limit: int,
    max_stream: int | None = None,
) -> list[tuple[str, int]]:
    """Thread roots of the room, most recently active first: ``(root event ID, latest stream)``.

    ``participant``: only threads whose root or a reply that user sent.
    """
    qs = EventRow.objects.filter(_timeline_rows(room), relation_type="m.thread", relates_to__isnull=False)
    if max_stream is not None:
        qs = qs.filter(stream_ordering__lte=max_stream)
    if participant is not None:
        replied = EventRow.objects.filter(room=room, relation_type="m.thread", sender=participant).values(
            "relates_to"
        )
        rooted = EventRow.objects.filter(room=room, sender=participant).values("event_id")
        qs = qs.filter(Q(relates_to__in=replied) | Q(relates_to__in=rooted))
    grouped = qs.values("relates_to").annotate(latest=Max("stream_ordering"))
    if before_stream is not None:
        grouped = grouped.filter(latest__lt=before_stream)
    rows = grouped.order_by("-latest", "relates_to")[:limit]
    return [(str(r["relates_to"]), int(r["latest"])) for r in rows]


def get_room_events_by_ids(room: Room, event_ids: Sequence[str]) -> dict[str, StoredEvent]:
    rows = EventRow.objects.filter(_timeline_rows(room), event_id__in=list(event_ids)).values(*EVENT_FIELDS)
    return {r["event_id"]: from_values(r) for r in rows}


# --------------------------------------------------------------------------- members


def get_current_member_events(
    room: Room, *, memberships: Sequence[str] | None = None, not_memberships: Sequence[str] = ()
) -> list[StoredEvent]:
    """Current m.room.member events of the room (one query)."""
    qs = RoomMembership.objects.filter(room=room)
    if memberships is not None:
        qs = qs.filter(membership__in=list(memberships))
    if not_memberships:
        qs = qs.exclude(membership__in=list(not_memberships))
    nids = qs.values("event_id")
    rows = EventRow.objects.filter(id__in=nids).values(*EVENT_FIELDS)
    return sorted((from_values(r) for r in rows), key=lambda e: e.event.state_key or "")


def get_joined_members(room: Room) -> list[tuple[str, str | None, str | None]]:
    """``(user_id, displayname, avatar_url)`` of the joined members (one query)."""
    return [
        (u, d, a)
        for u, d, a in RoomMembership.objects.filter(room=room, membership="join")
        .order_by("user_id")
        .values_list("user_id", "displayname", "avatar_url")
    ]


def count_joined_members(room: Room) -> int:
    return RoomMembership.objects.filter(room=room, membership="join").count()


def get_state_event_nids_of_type(group_id: int, event_type: str) -> dict[str, int]:
    return state_store.get_state_ids_of_type(group_id, event_type)


def get_current_state_event(room: Room, event_type: str, state_key: str) -> StoredEvent | None:
    nid = (
        CurrentStateEvent.objects.filter(room=room, type=event_type, state_key=state_key)
        .values_list("event_id", flat=True)
        .first()
    )
    if nid is None:
        return None
    row = EventRow.objects.filter(id=nid).values(*EVENT_FIELDS).first()
    return from_values(row) if row else None


def get_current_state_stored(room: Room, types: Sequence[str] | None = None) -> list[StoredEvent]:
    """The room's whole current state (or some types of it) as stored events: one query."""
    qs = CurrentStateEvent.objects.filter(room=room)
    if types is not None:
        qs = qs.filter(type__in=list(types))
    rows = EventRow.objects.filter(id__in=qs.values("event_id")).values(*EVENT_FIELDS)
    return [from_values(r) for r in rows]


def count_events_by_type(room: Room) -> dict[str, int]:
    """For operators and tests."""
    return {
        t: int(n)
        for t, n in EventRow.objects.filter(room=room)
        .values_list("type")
        .annotate(n=Count("id"))
        .values_list("type", "n")
    }

"""Reading a room's timeline: pagination, state at many events at once, relations, members.

Every selector here costs a bounded number of queries whatever the number of
events asked for (no N+1): /messages, /context, /relations and /sync call them
on pages of up to 1000 events.

Topological keys: an event's position in its room is ``(depth, stream_ordering)``;
room pagination tokens (``tribune.tokens.RoomToken``) carry such a key. A key
names the point *just after* that event, so "events before key K" are those
with ``(depth, stream) <= K``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from django.db.models import Count, Max, Q

from dagcore.models import CurrentStateEvent, Room, RoomMembership, StateGroup, StateGroupEntry
from dagcore.models import Event as EventRow
from dagcore.protocol.events import StateKey
from dagcore.store import state as state_store
from dagcore.store.events import _FIELDS, StoredEvent, _from_values

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
    qs = EventRow.objects.filter(_timeline_rows(room))
    if event_filter is not None:
        qs = qs.filter(event_filter.as_q())
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
    return [_from_values(row) for row in qs.values(*_FIELDS)[:limit]]


def get_topological_key_at_stream(room: Room, stream: int) -> TopoKey | None:
    """The key of the room's last event at or before stream position ``stream`` (a sync token).

    ``None`` when the room had no events by then.
    """
    row = (
        EventRow.objects.filter(_timeline_rows(room), stream_ordering__lte=stream)
        .order_by("-stream_ordering")
        .values_list("depth", "stream_ordering")
        .first()
    )
    return (int(row[0]), int(row[1] or 0)) if row else None


def get_room_end_key(room: Room) -> TopoKey | None:
    row = (
        EventRow.objects.filter(_timeline_rows(room))
        .order_by("-depth", "-stream_ordering")
        .values_list("depth", "stream_ordering")
        .first()
    )
    return (int(row[0]), int(row[1] or 0)) if row else None


def get_room_event(room: Room, event_id: str) -> StoredEvent | None:
    """A timeline event of this room (not an outlier, rejected or soft-failed one)."""
    row = EventRow.objects.filter(_timeline_rows(room), event_id=event_id).values(*_FIELDS).first()
    return _from_values(row) if row else None


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
    row = qs.values(*_FIELDS).first()
    return _from_values(row) if row else None


# --------------------------------------------------------------------------- state at many events


def _load_chains(groups: Iterable[int]) -> dict[int, tuple[int, ...]]:
    """Chains of many state groups: cached ones free, the others in one query."""
    out: dict[int, tuple[int, ...]] = {}
    missing: list[int] = []
    for g in set(groups):
        cached = state_store._chain_cache.get(g)
        if cached is None:
            missing.append(g)
        else:
            out[g] = tuple(cached)
    if missing:
        for gid, chain in StateGroup.objects.filter(id__in=missing).values_list("id", "chain"):
            value = tuple(json.loads(chain))
            state_store._chain_cache.put(gid, value)
            out[gid] = value
    return out


def get_state_ids_at_groups(
    wanted: Mapping[int, Iterable[StateKey]],
) -> dict[int, dict[StateKey, int]]:
    """For each state group, the event nids at the asked keys: two queries at most, any number of groups."""
    wanted = {g: list(keys) for g, keys in wanted.items()}
    all_keys = {k for keys in wanted.values() for k in keys}
    if not wanted or not all_keys:
        return {g: {} for g in wanted}
    chains = _load_chains(wanted)
    union = {gid for chain in chains.values() for gid in chain}
    cond = Q()
    for etype, skey in all_keys:
        cond |= Q(type=etype, state_key=skey)
    entries: dict[int, dict[StateKey, int]] = {}
    for gid, etype, skey, nid in (
        StateGroupEntry.objects.filter(group_id__in=list(union))
        .filter(cond)
        .values_list("group_id", "type", "state_key", "event_nid")
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


def get_relation_summaries(parents: Sequence[StoredEvent], *, user_id: str | None) -> RelationSummary:
    """Bundled aggregations for ``parents`` (spec: "Server-side aggregation of child events").

    One query finds which parents have children at all; threads and edits cost
    one more query each when present.
    """
    summary = RelationSummary()
    ids = [p.event_id for p in parents]
    if not ids:
        return summary
    children = (
        EventRow.objects.filter(
            room_id__in={p.room_nid for p in parents},
            relates_to__in=ids,
            relation_type__in=BUNDLED_RELATIONS,
            stream_ordering__isnull=False,
            soft_failed=False,
            redacted_by__isnull=True,
        )
        .values_list(
            "relates_to",
            "relation_type",
            "event_id",
            "sender",
            "stream_ordering",
            "origin_server_ts",
            "type",
            "room_id",
        )
        .order_by("stream_ordering")
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
            summary.references.setdefault(parent, []).append(event_id)
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
    wanted = set(latest_ids.values()) | set(edit_ids.values())
    if wanted:
        rows = {
            r["event_id"]: _from_values(r)
            for r in EventRow.objects.filter(event_id__in=wanted).values(*_FIELDS)
        }
        for parent, eid in latest_ids.items():
            if eid in rows:
                items = threads[parent]
                participated = user_id is not None and (
                    by_id[parent].event.sender == user_id or any(s == user_id for _, s, _ in items)
                )
                summary.threads[parent] = (len(items), rows[eid], participated)
        for parent, eid in edit_ids.items():
            if eid in rows:
                summary.edits[parent] = rows[eid]
    return summary


def get_redaction_events(redaction_ids: Iterable[str]) -> dict[str, StoredEvent]:
    ids = [i for i in set(redaction_ids) if i]
    if not ids:
        return {}
    return {
        r["event_id"]: _from_values(r) for r in EventRow.objects.filter(event_id__in=ids).values(*_FIELDS)
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
    return [_from_values(row) for row in qs.values(*_FIELDS)[:limit]]


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
    rows = EventRow.objects.filter(_timeline_rows(room), event_id__in=list(event_ids)).values(*_FIELDS)
    return {r["event_id"]: _from_values(r) for r in rows}


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
    rows = EventRow.objects.filter(id__in=nids).values(*_FIELDS)
    return sorted((_from_values(r) for r in rows), key=lambda e: e.event.state_key or "")


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
    row = EventRow.objects.filter(id=nid).values(*_FIELDS).first()
    return _from_values(row) if row else None


def get_current_state_stored(room: Room, types: Sequence[str] | None = None) -> list[StoredEvent]:
    """The room's whole current state (or some types of it) as stored events: one query."""
    qs = CurrentStateEvent.objects.filter(room=room)
    if types is not None:
        qs = qs.filter(type__in=list(types))
    rows = EventRow.objects.filter(id__in=qs.values("event_id")).values(*_FIELDS)
    return [_from_values(r) for r in rows]


def count_events_by_type(room: Room) -> dict[str, int]:
    """For operators and tests."""
    return {
        t: int(n)
        for t, n in EventRow.objects.filter(room=room)
        .values_list("type")
        .annotate(n=Count("id"))
        .values_list("type", "n")
    }

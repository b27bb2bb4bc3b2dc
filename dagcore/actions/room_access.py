"""Who may see what of a room: membership checks, history visibility, and client annotations.

Spec: https://spec.matrix.org/v1.19/client-server-api/#history-visibility. An
event is visible to a user according to the ``m.room.history_visibility`` in
force at the event and the user's membership at the event:

* ``world_readable`` — to anyone;
* ``shared`` — to members, from any point of history, once they joined (also
  after they left: up to their departure);
* ``invited`` — from the point they were invited;
* ``joined`` — only while they were joined.

The user's own membership events, and a visibility change, count with the more
permissive of the before/after values, so users always see the event that let
them in (or sent them out). ``/messages``, ``/context``, ``/event``, ``/state``,
``/relations`` and ``/sync`` all decide through :func:`filter_visible_events`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dagcore.events_format import ClientEventExtras
from dagcore.http.errors import MatrixError
from dagcore.models import Room
from dagcore.protocol.events import Event, StateKey
from dagcore.protocol.redaction import redact_pdu
from dagcore.server_keys import get_server_name
from dagcore.store import accounts as account_store
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store import timeline
from dagcore.store import txns as txn_store
from dagcore.store.events import StoredEvent, as_redacted

HISTORY_VISIBILITY_KEY: StateKey = ("m.room.history_visibility", "")
#: Most permissive first.
VISIBILITY_ORDER = ("world_readable", "shared", "invited", "joined")
#: Most permissive first, for the user's own membership changes.
MEMBERSHIP_ORDER = ("join", "invite", "knock", "leave", "ban")
DEFAULT_VISIBILITY = "shared"


@dataclass(frozen=True)
class RoomReader:
    """How one user may read one room, decided once per request."""

    room: Room
    user_id: str | None
    #: Current membership (None: never a member, or the room was forgotten).
    membership: str | None
    #: A departed user sees nothing after this stream position (their leave or ban).
    max_stream: int | None
    #: Reading as a non-member (a world_readable room).
    is_peeking: bool
    #: The state the user sees: current, or as it was when they left.
    state_group: int | None


def get_room(room_id: str) -> Room | None:
    return room_store.get_room(room_id)


def _visibility_of(event: Event | None) -> str:
    if event is None:
        return DEFAULT_VISIBILITY
    value = event.content.get("history_visibility")
    return value if value in VISIBILITY_ORDER else DEFAULT_VISIBILITY


def _current_visibility(room: Room) -> str:
    state = state_store.get_current_state_events(room, [HISTORY_VISIBILITY_KEY])
    return _visibility_of(state.get(HISTORY_VISIBILITY_KEY))


def access_room_history(*, user_id: str | None, room_id: str, allow_departed: bool = True) -> RoomReader:
    """A reader for the room's timeline and state, or 403 M_FORBIDDEN.

    Joined users read everything visible; users who left (or were kicked or
    banned) read up to their departure; others only world-readable rooms.
    Unknown rooms answer as closed ones do (no probing for room IDs).
    """
    room = room_store.get_room(room_id)
    if room is None:
        raise MatrixError(403, "M_FORBIDDEN", "You are not a member of this room")
    membership = room_store.get_membership(room, user_id) if user_id is not None else None
    if membership is not None and membership.membership == "join":
        return RoomReader(room, user_id, "join", None, False, room.current_state_group)
    if (
        membership is not None
        and allow_departed
        and membership.membership in ("leave", "ban")
        and user_id is not None
        and not room_store.is_room_forgotten(room, user_id)
    ):
        stored = event_store.get_events_by_nids([membership.event_id]).get(membership.event_id)
        if stored is not None and stored.stream_ordering is not None:
            return RoomReader(
                room, user_id, membership.membership, stored.stream_ordering, False, stored.state_group
            )
    if _current_visibility(room) == "world_readable":
        current = membership.membership if membership is not None else None
        return RoomReader(room, user_id, current, None, True, room.current_state_group)
    raise MatrixError(403, "M_FORBIDDEN", "You are not a member of this room")


def access_joined_room(*, user_id: str, room_id: str) -> Room:
    """The room, if the user is joined to it (403 otherwise)."""
    room = room_store.get_room(room_id)
    if room is None:
        raise MatrixError(403, "M_FORBIDDEN", "You are not a member of this room")
    membership = room_store.get_membership(room, user_id)
    if membership is None or membership.membership != "join":
        raise MatrixError(403, "M_FORBIDDEN", "You are not joined to this room")
    return room


def _more_permissive(order: Sequence[str], a: str, b: str) -> str:
    return a if order.index(a) <= order.index(b) else b


def filter_visible_events(reader: RoomReader, events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """The events the reader may see, in the given order (a bounded number of queries for any count)."""
    if not events:
        return []
    candidates = [
        e for e in events if reader.max_stream is None or (e.stream_ordering or 0) <= reader.max_stream
    ]
    member_key: StateKey | None = ("m.room.member", reader.user_id) if reader.user_id else None
    keys: list[StateKey] = [HISTORY_VISIBILITY_KEY] + ([member_key] if member_key else [])
    groups = {e.state_group_before for e in candidates if e.state_group_before is not None}
    at_groups = timeline.get_state_ids_at_groups({g: keys for g in groups})
    nids = {n for st in at_groups.values() for n in st.values()}
    loaded = {n: s.event for n, s in event_store.get_events_by_nids(nids).items()} if nids else {}

    visible: list[StoredEvent] = []
    #: Visible events the reader was not joined for: an erased sender's are served pruned.
    not_joined_for: set[str] = set()
    for stored in candidates:
        event = stored.event
        st = at_groups.get(stored.state_group_before, {}) if stored.state_group_before is not None else {}
        hv_nid = st.get(HISTORY_VISIBILITY_KEY)
        visibility = _visibility_of(loaded.get(hv_nid) if hv_nid is not None else None)
        if event.type == "m.room.history_visibility" and event.state_key == "":
            visibility = _more_permissive(VISIBILITY_ORDER, visibility, _visibility_of(event))
        member_nid = st.get(member_key) if member_key else None
        member_event = loaded.get(member_nid) if member_nid is not None else None
        membership = (member_event.membership if member_event is not None else None) or "leave"
        if membership not in MEMBERSHIP_ORDER:
            membership = "leave"
        if event.type == "m.room.member" and event.state_key == reader.user_id:
            # The user's own membership change: they always see the event that let them
            # in or sent them out (otherwise a rejected invite would never leave the client).
            own = event.membership if event.membership in MEMBERSHIP_ORDER else "leave"
            if own in ("leave", "ban") and membership in ("join", "invite", "knock"):
                visible.append(stored)
                continue
            membership = _more_permissive(MEMBERSHIP_ORDER, membership, own or "leave")
        if (
            visibility == "world_readable"
            or membership == "join"
            or (visibility == "shared" and not reader.is_peeking)
            or (visibility == "invited" and membership == "invite")
        ):
            visible.append(stored)
            if membership != "join":
                not_joined_for.add(stored.event_id)
    return _pruned_for_erased_senders(visible, not_joined_for)


def _pruned_for_erased_senders(visible: list[StoredEvent], not_joined_for: set[str]) -> list[StoredEvent]:
    """An erased user's events (deactivated with ``erase``) reach only those who were in the
    room when they were sent; everyone else gets them pruned, as redacted (Synapse's GDPR
    erasure: ``filter_events_for_client``). One query, and only when such events are visible."""
    suffix = ":" + get_server_name()
    senders = {
        e.event.sender for e in visible if e.event_id in not_joined_for and e.event.sender.endswith(suffix)
    }
    erased = account_store.get_erased_users(senders) if senders else set()
    if not erased:
        return visible
    return [
        replace(e, event=as_redacted(e.event))
        if e.event_id in not_joined_for and e.event.sender in erased
        else e
        for e in visible
    ]


def access_event(reader: RoomReader, event_id: str) -> StoredEvent:
    """One visible event of the room, or 404 (unknown and invisible look the same)."""
    stored = timeline.get_room_event(reader.room, event_id)
    visible = filter_visible_events(reader, [stored]) if stored is not None else []
    if not visible:
        raise MatrixError(404, "M_NOT_FOUND", "Event not found")
    return visible[0]  # as served (an erased sender's event may be pruned)


def get_visible_state(reader: RoomReader, *, types: Sequence[str] | None = None) -> list[StoredEvent]:
    """The room state the reader sees: current, or as it was when they left."""
    room = reader.room
    if reader.state_group is None:
        return []
    if reader.state_group == room.current_state_group:
        return timeline.get_current_state_stored(room, types)
    ids = state_store.get_state_ids(reader.state_group)
    if types is not None:
        ids = {k: v for k, v in ids.items() if k[0] in types}
    return list(event_store.get_events_by_nids(ids.values()).values())


def get_visible_state_event(reader: RoomReader, event_type: str, state_key: str) -> StoredEvent | None:
    room = reader.room
    if reader.state_group is None:
        return None
    if reader.state_group == room.current_state_group:
        return timeline.get_current_state_event(room, event_type, state_key)
    nid = state_store.get_state_ids(reader.state_group, [(event_type, state_key)]).get(
        (event_type, state_key)
    )
    return event_store.get_events_by_nids([nid]).get(nid) if nid is not None else None


def get_state_at_event(stored: StoredEvent, keys: Iterable[StateKey] | None = None) -> list[StoredEvent]:
    """The room state after an event (for /context, lazy-loaded members, /members?at=)."""
    if stored.state_group is None:
        return []
    ids = state_store.get_state_ids(stored.state_group, keys)
    return list(event_store.get_events_by_nids(ids.values()).values())


# --------------------------------------------------------------------------- annotations for clients


def get_client_event_extras(
    events: Sequence[StoredEvent],
    *,
    user_id: str | None,
    device_key: str | None,
    with_prev_content: bool = True,
    with_relations: bool = True,
    relations_as_of: int | None = None,
) -> ClientEventExtras:
    """Batch-load redactions, transaction IDs, replaced state and bundled relations: O(1) queries.

    ``relations_as_of``: the caller's events stream position (``/sync``), which lets
    the relations found for the same events at that position be reused.
    """
    extras = ClientEventExtras()
    if not events:
        return extras
    redacted = {e.event_id: e.redacted_by for e in events if e.redacted_by}
    if redacted:
        by_id = timeline.get_redaction_events(redacted.values())
        extras.redactions = {t: by_id[r].event for t, r in redacted.items() if r in by_id}
    if user_id is not None and device_key is not None:
        own = [e.event_id for e in events if e.event.sender == user_id]
        if own:
            extras.txn_ids = txn_store.get_txn_ids_for_events(
                user_id=user_id, device_key=device_key, event_ids=own
            )
    if with_prev_content:
        state_events = [
            e for e in events if e.event.state_key is not None and e.state_group_before is not None
        ]
        if state_events:
            wanted: dict[int, list[StateKey]] = {}
            for e in state_events:
                assert e.state_group_before is not None
                wanted.setdefault(e.state_group_before, []).append(e.event.state_tuple)
            at = timeline.get_state_ids_at_groups(wanted)
            prev_nids = {
                e.event_id: at.get(e.state_group_before or 0, {}).get(e.event.state_tuple)
                for e in state_events
            }
            loaded = event_store.get_events_by_nids([n for n in prev_nids.values() if n is not None])
            prev_redactions = {s.event_id: s.redacted_by for s in loaded.values() if s.redacted_by}
            for event_id, nid in prev_nids.items():
                if nid is None or nid not in loaded:
                    continue
                prev = loaded[nid]
                if prev.event_id == event_id:
                    continue
                content = prev.event.content
                if prev.event_id in prev_redactions:
                    content = redact_pdu(prev.event.pdu, prev.event.room_version)["content"]
                extras.prev_state[event_id] = (content, prev.event.sender)
    if with_relations:
        parents = [e for e in events if not e.redacted_by]
        extras.relations = timeline.get_relation_summaries(parents, user_id=user_id, as_of=relations_as_of)
    return extras


def get_redaction_for(stored: StoredEvent) -> Event | None:
    if not stored.redacted_by:
        return None
    found = timeline.get_redaction_events([stored.redacted_by]).get(stored.redacted_by)
    return found.event if found else None


__all__ = [
    "ClientEventExtras",
    "RoomReader",
    "access_event",
    "access_joined_room",
    "access_room_history",
    "filter_visible_events",
    "get_client_event_extras",
    "get_visible_state",
]


# --------------------------------------------------------------------------- reading the timeline

#: Rounds of "fetch a page, drop what the reader may not see" before answering with what was found.
MAX_FILL_ROUNDS = 5


@dataclass
class TimelinePage:
    events: list[StoredEvent]
    #: Where the next page starts (None: nothing more the reader may see).
    next_key: timeline.TopoKey | None
    #: Member events of the senders (lazy-loading members), else empty.
    state: list[StoredEvent] = field(default_factory=list)


def _next_cursor(stored: StoredEvent, direction: str) -> timeline.TopoKey:
    stream = stored.stream_ordering or 0
    # "b" pages hold keys <= cursor, so step just below the last event; "f" pages hold keys > cursor.
    return (stored.depth, stream - 1) if direction == "b" else (stored.depth, stream)


def key_at_stream(reader: RoomReader, stream: int) -> timeline.TopoKey | None:
    """The position of a sync token's stream position in this room."""
    return timeline.get_topological_key_at_stream(reader.room, stream)


def room_end_key(reader: RoomReader) -> timeline.TopoKey | None:
    return timeline.get_room_end_key(reader.room)


def _fill_page(
    reader: RoomReader,
    fetch: Any,
    *,
    from_key: timeline.TopoKey | None,
    direction: str,
    limit: int,
    contains_url: bool | None = None,
) -> tuple[list[StoredEvent], timeline.TopoKey | None]:
    """Fetch pages until ``limit`` visible events are found or the timeline ends."""
    collected: list[StoredEvent] = []
    cursor = from_key
    exhausted = False
    for _ in range(MAX_FILL_ROUNDS):
        want = limit - len(collected)
        if want <= 0:
            break
        batch: list[StoredEvent] = fetch(cursor, want)
        if not batch:
            exhausted = True
            break
        cursor = _next_cursor(batch[-1], direction)
        visible = filter_visible_events(reader, batch)
        if contains_url is not None:
            visible = [e for e in visible if isinstance(e.event.content.get("url"), str) == contains_url]
        collected.extend(visible)
        if len(batch) < want:
            exhausted = True
            break
    return collected, (None if exhausted else cursor)


def lazy_members_for(
    reader: RoomReader, events: Sequence[StoredEvent], *, at: StoredEvent | None
) -> list[StoredEvent]:
    """Member events of the senders of ``events`` (spec: "Lazy-loading room members")."""
    senders = sorted({e.event.sender for e in events})
    if not senders:
        return []
    keys: list[StateKey] = [("m.room.member", s) for s in senders]
    group = at.state_group if at is not None and at.state_group is not None else reader.state_group
    if group is None:
        return []
    ids = state_store.get_state_ids(group, keys)
    return list(event_store.get_events_by_nids(ids.values()).values())


def access_room_messages(
    reader: RoomReader,
    *,
    from_key: timeline.TopoKey | None,
    direction: str,
    limit: int,
    to_key: timeline.TopoKey | None = None,
    event_filter: timeline.EventFilter | None = None,
    contains_url: bool | None = None,
    lazy_load_members: bool = False,
) -> TimelinePage:
    """``/messages``: a page of what the reader may see, from a position, in either direction."""

    def fetch(cursor: timeline.TopoKey | None, want: int) -> list[StoredEvent]:
        return timeline.paginate_room_events(
            reader.room,
            from_key=cursor,
            direction=direction,
            limit=want,
            to_key=to_key,
            event_filter=event_filter,
            max_stream=reader.max_stream,
        )

    events, next_key = _fill_page(
        reader, fetch, from_key=from_key, direction=direction, limit=limit, contains_url=contains_url
    )
    state = lazy_members_for(reader, events, at=events[0] if events else None) if lazy_load_members else []
    return TimelinePage(events=events, next_key=next_key, state=state)


@dataclass
class EventContext:
    event: StoredEvent
    before: list[StoredEvent]
    after: list[StoredEvent]
    start_key: timeline.TopoKey
    end_key: timeline.TopoKey
    state: list[StoredEvent]


def access_event_context(
    reader: RoomReader,
    *,
    event_id: str,
    limit: int,
    event_filter: timeline.EventFilter | None = None,
    contains_url: bool | None = None,
    lazy_load_members: bool = False,
    before_limit: int | None = None,
    with_state: bool = True,
) -> EventContext:
    """``/context``: an event with up to ``limit`` visible events around it and the state after them.

    ``before_limit``: how many of ``limit`` come before the event (default half); ``with_state``
    False leaves the state out (``/search`` result contexts carry none).
    """
    target = access_event(reader, event_id)
    if before_limit is None:
        before_limit = limit // 2
    after_limit = limit - before_limit
    key: timeline.TopoKey = (target.depth, target.stream_ordering or 0)
    start_cursor = _next_cursor(target, "b")

    def fetch_before(cursor: timeline.TopoKey | None, want: int) -> list[StoredEvent]:
        return timeline.paginate_room_events(
            reader.room, from_key=cursor, direction="b", limit=want, event_filter=event_filter,
            max_stream=reader.max_stream,
        )  # fmt: skip

    def fetch_after(cursor: timeline.TopoKey | None, want: int) -> list[StoredEvent]:
        return timeline.paginate_room_events(
            reader.room, from_key=cursor, direction="f", limit=want, event_filter=event_filter,
            max_stream=reader.max_stream,
        )  # fmt: skip

    before: list[StoredEvent] = []
    after: list[StoredEvent] = []
    start_key, end_key = start_cursor, key
    if before_limit > 0:
        before, next_b = _fill_page(
            reader,
            fetch_before,
            from_key=start_cursor,
            direction="b",
            limit=before_limit,
            contains_url=contains_url,
        )
        start_key = next_b or (_next_cursor(before[-1], "b") if before else start_cursor)
    if after_limit > 0:
        after, next_f = _fill_page(
            reader, fetch_after, from_key=key, direction="f", limit=after_limit, contains_url=contains_url
        )
        end_key = next_f or (_next_cursor(after[-1], "f") if after else key)
    last = after[-1] if after else target
    if not with_state:
        state: list[StoredEvent] = []
    elif lazy_load_members:
        state = lazy_members_for(reader, [*before, target, *after], at=last)
    else:
        state = get_state_at_event(last)
    return EventContext(target, before, after, start_key, end_key, state)


@dataclass
class RelationsPage:
    events: list[StoredEvent]
    next_key: timeline.TopoKey | None
    recursion_depth: int | None


#: spec: "servers SHOULD bound recursion to at least 3 levels".
MAX_RELATIONS_RECURSION = 3


def access_relations(
    reader: RoomReader,
    *,
    parent_id: str,
    rel_type: str | None,
    event_type: str | None,
    from_key: timeline.TopoKey | None,
    to_key: timeline.TopoKey | None,
    direction: str,
    limit: int,
    recurse: bool,
) -> RelationsPage:
    """``/relations``: children of a visible event (optionally their children too), newest first by default."""
    access_event(reader, parent_id)
    parents = [parent_id]
    depth_used: int | None = None
    if recurse:
        # Descendants up to MAX_RELATIONS_RECURSION levels: the results are the
        # children of every node above the last level.
        depth_used = 1
        seen = {parent_id}
        frontier = [parent_id]
        for level in range(1, MAX_RELATIONS_RECURSION + 1):
            found = [c for c in timeline.get_child_ids(reader.room, frontier) if c not in seen]
            if not found:
                break
            depth_used = level
            seen.update(found)
            if level < MAX_RELATIONS_RECURSION:
                parents.extend(found)
            frontier = found

    def fetch(cursor: timeline.TopoKey | None, want: int) -> list[StoredEvent]:
        return timeline.paginate_relations(
            reader.room,
            parent_ids=parents,
            rel_type=rel_type,
            event_type=event_type,
            from_key=cursor,
            direction=direction,
            limit=want,
            to_key=to_key,
            max_stream=reader.max_stream,
        )

    events, next_key = _fill_page(reader, fetch, from_key=from_key, direction=direction, limit=limit)
    return RelationsPage(events=events, next_key=next_key, recursion_depth=depth_used)


@dataclass
class ThreadsPage:
    roots: list[StoredEvent]
    next_stream: int | None


def access_threads(
    reader: RoomReader, *, participated_only: bool, before_stream: int | None, limit: int
) -> ThreadsPage:
    """``/threads``: thread roots by latest activity, newest first (visible roots only)."""
    rows = timeline.list_threads(
        reader.room,
        participant=reader.user_id if participated_only else None,
        before_stream=before_stream,
        limit=limit,
        max_stream=reader.max_stream,
    )
    by_id = timeline.get_room_events_by_ids(reader.room, [r for r, _ in rows])
    ordered = [by_id[r] for r, _ in rows if r in by_id]
    visible = {e.event_id for e in filter_visible_events(reader, ordered)}
    roots = [e for e in ordered if e.event_id in visible]
    next_stream = rows[-1][1] if len(rows) == limit else None
    return ThreadsPage(roots=roots, next_stream=next_stream)


def access_event_at_timestamp(reader: RoomReader, *, ts: int, direction: str) -> StoredEvent:
    """``/timestamp_to_event``: the closest visible event at or after (f) / before (b) ``ts``."""
    found = timeline.get_event_closest_to_ts(
        reader.room, ts=ts, direction=direction, max_stream=reader.max_stream
    )
    if found is None or not filter_visible_events(reader, [found]):
        raise MatrixError(404, "M_NOT_FOUND", "No event found at that time")
    return found


def access_room_members(
    reader: RoomReader,
    *,
    at_stream: int | None,
    membership: str | None,
    not_membership: str | None,
) -> list[StoredEvent]:
    """``/members``: member events of the state the reader sees (or at a sync token), filtered."""
    room = reader.room
    group: int | None = reader.state_group
    if at_stream is not None:
        cap = at_stream if reader.max_stream is None else min(at_stream, reader.max_stream)
        key = timeline.get_topological_key_at_stream(room, cap)
        if key is not None:
            at_event = timeline.paginate_room_events(room, from_key=key, direction="b", limit=1)
            group = at_event[0].state_group if at_event else group
    if group is not None and group == room.current_state_group:
        members = timeline.get_current_member_events(room)
    elif group is not None:
        nids = state_store.get_state_ids_of_type(group, "m.room.member")
        members = sorted(
            event_store.get_events_by_nids(nids.values()).values(), key=lambda e: e.event.state_key or ""
        )
    else:
        members = []

    def wanted(e: StoredEvent) -> bool:
        m = e.event.membership
        if membership is None and not_membership is None:
            return True
        # spec: given together, the two parameters are an OR.
        return (membership is not None and m == membership) or (
            not_membership is not None and m != not_membership
        )

    return [e for e in members if wanted(e)]


def access_joined_members(*, user_id: str, room_id: str) -> list[tuple[str, str | None, str | None]]:
    """``/joined_members``: ``(user_id, displayname, avatar_url)``, for members of the room only."""
    room = access_joined_room(user_id=user_id, room_id=room_id)
    return timeline.get_joined_members(room)

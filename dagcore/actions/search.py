"""Server-side search of room events (spec: client-server API "Server Side Search", ``POST /search``).

Clients search unencrypted rooms here (encrypted ones they search locally). The
search covers the rooms the user is joined to and only events they may see
(history visibility), matching ``content.body``, ``content.name`` and
``content.topic`` of ``m.room.message``, ``m.room.name`` and ``m.room.topic``.

Matching: every word of the search term must start a word of the text
(case-insensitive), as in Synapse's full-text search. The work per request is
bounded: at most ``MAX_SCAN`` candidate events, newest first; when more may
match, ``next_batch`` continues the scan where this one stopped. ``rank`` orders
the results of each scanned window by how often the words occur, so ranked
pages are ranked within the events each one scanned.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagcore.actions import room_access
from dagcore.actions.filters import FilterError, RoomEventFilter, parse_room_event_filter
from dagcore.actions.room_access import RoomReader
from dagcore.http.errors import MatrixError
from dagcore.http.params import ascii_uint
from dagcore.protocol.events import StateKey
from dagcore.store import sync as sync_store
from dagcore.store.events import StoredEvent
from dagcore.store.timeline import TopoKey

#: Searchable keys and the event type each one is found in.
KEY_TYPES = {"content.body": "m.room.message", "content.name": "m.room.name", "content.topic": "m.room.topic"}
MAX_TERM_CHARS = 512
MAX_WORDS = 16
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_CONTEXT = 20
#: Candidate events examined per request (the bound on the work one request does).
MAX_SCAN = 5_000
SCAN_BATCH = 500
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class SearchResult:
    stored: StoredEvent
    rank: float
    before: list[StoredEvent] = field(default_factory=list)
    after: list[StoredEvent] = field(default_factory=list)
    start: TopoKey | None = None
    end: TopoKey | None = None


@dataclass
class SearchOutcome:
    results: list[SearchResult]
    count: int
    highlights: list[str]
    next_batch: str | None
    #: user ID -> (display name, avatar URL), when the context asked for profiles.
    profiles: dict[str, tuple[str | None, str | None]] | None
    #: room ID -> current state events (``include_state``).
    state: dict[str, list[StoredEvent]] | None
    group_by: list[str]


@dataclass(frozen=True)
class SearchCriteria:
    words: tuple[str, ...]
    keys: tuple[str, ...]
    event_filter: RoomEventFilter
    limit: int
    order_by: str
    before_limit: int | None
    after_limit: int | None
    include_profile: bool
    include_state: bool
    group_by: tuple[str, ...]


def _int_in(obj: Mapping[str, Any], key: str, default: int, maximum: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MatrixError(400, "M_INVALID_PARAM", f"{key} must be a non-negative integer")
    return min(value, maximum)


def parse_criteria(body: Mapping[str, Any]) -> SearchCriteria:
    """The ``room_events`` criteria of a ``/search`` body, or 400."""
    categories = body.get("search_categories")
    if not isinstance(categories, dict):
        raise MatrixError(400, "M_BAD_JSON", "search_categories must be an object")
    criteria = categories.get("room_events")
    if not isinstance(criteria, dict):
        # room_events is the only category the spec defines.
        raise MatrixError(400, "M_BAD_JSON", "search_categories.room_events must be an object")
    term = criteria.get("search_term")
    if not isinstance(term, str) or not term.strip():
        raise MatrixError(400, "M_BAD_JSON", "search_term must be a non-empty string")
    if len(term) > MAX_TERM_CHARS:
        raise MatrixError(400, "M_INVALID_PARAM", f"search_term is longer than {MAX_TERM_CHARS} characters")
    words = tuple(dict.fromkeys(w.casefold() for w in _WORD.findall(term)))[:MAX_WORDS]
    keys = criteria.get("keys", list(KEY_TYPES))
    if not isinstance(keys, list) or not keys or any(k not in KEY_TYPES for k in keys):
        raise MatrixError(400, "M_INVALID_PARAM", f"keys must be a list of {', '.join(KEY_TYPES)}")
    raw_filter = criteria.get("filter", {})
    if not isinstance(raw_filter, dict):
        raise MatrixError(400, "M_INVALID_PARAM", "filter must be an object")
    try:
        event_filter = parse_room_event_filter(raw_filter, "filter.")
    except FilterError as exc:
        raise MatrixError(400, "M_INVALID_PARAM", str(exc)) from None
    limit = min(event_filter.limit if event_filter.limit is not None else DEFAULT_LIMIT, MAX_LIMIT)
    order_by = criteria.get("order_by", "rank")
    if order_by not in ("rank", "recent"):
        raise MatrixError(400, "M_INVALID_PARAM", "order_by must be 'rank' or 'recent'")
    context = criteria.get("event_context")
    before_limit = after_limit = None
    include_profile = False
    if context is not None:
        if not isinstance(context, dict):
            raise MatrixError(400, "M_INVALID_PARAM", "event_context must be an object")
        before_limit = _int_in(context, "before_limit", 5, MAX_CONTEXT)
        after_limit = _int_in(context, "after_limit", 5, MAX_CONTEXT)
        include_profile = context.get("include_profile", False)
        if not isinstance(include_profile, bool):
            raise MatrixError(400, "M_INVALID_PARAM", "include_profile must be a boolean")
    include_state = criteria.get("include_state", False)
    if not isinstance(include_state, bool):
        raise MatrixError(400, "M_INVALID_PARAM", "include_state must be a boolean")
    group_by: list[str] = []
    groupings = criteria.get("groupings")
    if groupings is not None:
        groups = groupings.get("group_by") if isinstance(groupings, dict) else None
        if not isinstance(groups, list) or any(
            not isinstance(g, dict) or g.get("key") not in ("room_id", "sender") for g in groups
        ):
            raise MatrixError(400, "M_INVALID_PARAM", "groupings.group_by must list {key: room_id|sender}")
        group_by = [g["key"] for g in groups]
    return SearchCriteria(
        words=words,
        keys=tuple(dict.fromkeys(keys)),
        event_filter=event_filter,
        limit=limit,
        order_by=order_by,
        before_limit=before_limit,
        after_limit=after_limit,
        include_profile=include_profile,
        include_state=include_state,
        group_by=tuple(dict.fromkeys(group_by)),
    )


def _parse_batch(next_batch: str | None) -> int | None:
    """``next_batch`` is the stream position the previous scan stopped at."""
    if next_batch is None:
        return None
    position = ascii_uint(next_batch)
    if position is None:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid next_batch token")
    return position


def _rank(stored: StoredEvent, criteria: SearchCriteria) -> float:
    """0 when the event does not match; else how often the words start a word of its text."""
    event = stored.event
    texts = [
        event.content.get(key.removeprefix("content."))
        for key in criteria.keys
        if KEY_TYPES[key] == event.type
    ]
    found = [w.casefold() for t in texts if isinstance(t, str) for w in _WORD.findall(t)]
    if not found or not criteria.words:
        return 0.0
    hits = [sum(1 for w in found if w.startswith(term)) for term in criteria.words]
    if not all(hits):
        return 0.0
    return sum(hits) / len(found)


def search_room_events(*, user_id: str, body: Mapping[str, Any], next_batch: str | None) -> SearchOutcome:
    """``POST /search`` for ``room_events``: matches the user may see, with their context."""
    criteria = parse_criteria(body)
    before = _parse_batch(next_batch)
    joined = [m for m in sync_store.get_user_memberships(user_id) if m.membership == "join"]
    rooms = {m.room_nid: m.room_id for m in joined if criteria.event_filter.allows_room(m.room_id)}
    types = [t for k, t in KEY_TYPES.items() if k in criteria.keys]
    types = [t for t in dict.fromkeys(types) if criteria.event_filter.matches(event_type=t)]
    readers: dict[int, RoomReader] = {}
    matches: list[tuple[StoredEvent, float]] = []
    scanned = 0
    cursor = before
    exhausted = not rooms or not types
    while not exhausted and scanned < MAX_SCAN and len(matches) < criteria.limit:
        batch = sync_store.get_events_before(list(rooms), before=cursor, limit=SCAN_BATCH, types=types)
        if len(batch) < SCAN_BATCH:
            exhausted = True
        if not batch:
            break
        scanned += len(batch)
        cursor = batch[-1].stream_ordering
        candidates = [
            (s, r)
            for s in batch
            if criteria.event_filter.matches_event(
                event_type=s.event.type, sender=s.event.sender, content=s.event.content
            )
            and (r := _rank(s, criteria)) > 0
        ]
        by_room: dict[int, list[StoredEvent]] = {}
        for stored, _ in candidates:
            by_room.setdefault(stored.room_nid, []).append(stored)
        visible: set[int] = set()
        for nid, events in by_room.items():
            if nid not in readers:
                readers[nid] = room_access.access_room_history(user_id=user_id, room_id=rooms[nid])
            visible.update(s.nid for s in room_access.filter_visible_events(readers[nid], events))
        for stored, rank in candidates:
            if stored.nid in visible:
                matches.append((stored, rank))
                if len(matches) == criteria.limit:
                    cursor = stored.stream_ordering
                    break
    if criteria.order_by == "rank":
        matches.sort(key=lambda m: (-m[1], -(m[0].stream_ordering or 0)))
    results = [SearchResult(stored, rank) for stored, rank in matches]
    if criteria.before_limit is not None or criteria.after_limit is not None:
        for result in results:
            _add_context(result, readers[result.stored.room_nid], criteria)
    return SearchOutcome(
        results=results,
        count=len(results),
        highlights=list(criteria.words),
        next_batch=None if exhausted and len(matches) < criteria.limit else str(cursor),
        profiles=_profiles(results, rooms) if criteria.include_profile else None,
        state=_state(results, readers) if criteria.include_state else None,
        group_by=list(criteria.group_by),
    )


def _add_context(result: SearchResult, reader: RoomReader, criteria: SearchCriteria) -> None:
    before_limit = criteria.before_limit or 0
    after_limit = criteria.after_limit or 0
    context = room_access.access_event_context(
        reader,
        event_id=result.stored.event.event_id,
        limit=before_limit + after_limit,
        before_limit=before_limit,
        with_state=False,
    )
    result.before, result.after = context.before, context.after
    result.start, result.end = context.start_key, context.end_key


def _profiles(
    results: Sequence[SearchResult], rooms: Mapping[int, str]
) -> dict[str, tuple[str | None, str | None]]:
    """Display name and avatar of each sender in the results and their contexts, as in the room now."""
    senders = {(r.stored.room_nid, s.event.sender) for r in results for s in (r.stored, *r.before, *r.after)}
    keys: list[StateKey] = sorted({("m.room.member", user) for _, user in senders})
    state = sync_store.get_current_state_for_rooms(sorted({nid for nid, _ in senders}), keys)
    out: dict[str, tuple[str | None, str | None]] = {}
    for nid, user in sorted(senders):
        member = state.get(nid, {}).get(("m.room.member", user))
        if member is None or user in out:
            continue
        name, avatar = member.content.get("displayname"), member.content.get("avatar_url")
        out[user] = (name if isinstance(name, str) else None, avatar if isinstance(avatar, str) else None)
    return out


def _state(
    results: Sequence[SearchResult], readers: Mapping[int, RoomReader]
) -> dict[str, list[StoredEvent]]:
    out: dict[str, list[StoredEvent]] = {}
    for nid in dict.fromkeys(r.stored.room_nid for r in results):
        reader = readers[nid]
        out[reader.room.room_id] = room_access.get_visible_state(reader)
    return out

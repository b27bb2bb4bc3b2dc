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

from dagcore.actions import room_access
from dagcore.actions.filters import RoomEventFilter
from dagcore.actions.room_access import RoomReader
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


def words_of(text: str) -> list[str]:
    """The words of a text or a search term, case-folded (matching is case-insensitive)."""
    return [w.casefold() for w in _WORD.findall(text)]


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
    """The ``room_events`` criteria of a ``/search`` body (``tribune.inputs.parse_search_criteria``)."""

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


def _rank(stored: StoredEvent, criteria: SearchCriteria) -> float:
    """0 when the event does not match; else how often the words start a word of its text."""
    event = stored.event
    texts = [
        event.content.get(key.removeprefix("content."))
        for key in criteria.keys
        if KEY_TYPES[key] == event.type
    ]
    found = [w for t in texts if isinstance(t, str) for w in words_of(t)]
    if not found or not criteria.words:
        return 0.0
    hits = [sum(1 for w in found if w.startswith(term)) for term in criteria.words]
    if not all(hits):
        return 0.0
    return sum(hits) / len(found)


def search_room_events(*, user_id: str, criteria: SearchCriteria, before: int | None) -> SearchOutcome:
    """``POST /search`` for ``room_events``: matches the user may see, with their context.

    ``before``: the stream position a previous scan stopped at (its ``next_batch``), if any.
    """
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

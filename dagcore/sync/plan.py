"""Which joined and left rooms a sync shows, and what of each: its timeline's stream range
and whether it gets full state (spec "Syncing": an incremental sync shows only rooms
where something changed; a room joined since the token is synced as from scratch).

An incremental sync finds the rooms with new events through the events index
(:func:`find_news`), so its cost does not grow with the user's quiet rooms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dagcore.protocol.events import StateKey
from dagcore.store import events as event_store
from dagcore.store import sync as sync_store
from dagcore.store import timeline as timeline_store
from dagcore.store.events import StoredEvent
from dagcore.store.sync import MembershipInfo
from dagcore.sync.context import SyncContext

JOIN = "join"
LEAVE = "leave"
MEMBER = "m.room.member"

#: A room's timeline range ``(after, upto]`` in stream positions; ``after`` None: from its start.
StreamRange = tuple[int | None, int]


@dataclass(frozen=True)
class RoomPlan:
    """One room of the ``join`` or ``leave`` section, before anything of it is read."""

    m: MembershipInfo
    #: ``JOIN`` or ``LEAVE``.
    section: str
    full_state: bool
    #: Its timeline's range; None: no timeline to read (a joined room without news).
    timeline_range: StreamRange | None


@dataclass(frozen=True)
class News:
    """Rooms with timeline events after ``since`` (incremental syncs), with the newest one's
    stream position; when found by reading their timelines, those timelines too."""

    rooms: dict[int, int] = field(default_factory=dict)
    #: Per room with news, its newest events in its ``ranges`` range (unfiltered, ``limit + 1``).
    timelines: dict[int, list[StoredEvent]] = field(default_factory=dict)
    #: The range read for each room (rooms without news included): ``(since, now or the leave]``.
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)


def find_news(
    ctx: SyncContext, *, joined: Sequence[MembershipInfo], leaves: Sequence[MembershipInfo]
) -> News:
    """Which of these rooms have new timeline events since ``ctx.since`` (none for an initial sync).

    Without a timeline filter, the news and their timelines are read together (one
    query on PostgreSQL) and shared with the other syncs asking for the same ranges.
    """
    since = ctx.since
    if since is None or not ctx.moved("events"):
        return News()
    if not ctx.timeline_filter.filters_anything:
        ranges = {m.room_nid: (since.events, ctx.now.events) for m in joined}
        ranges.update({m.room_nid: (since.events, m.stream_ordering) for m in leaves})
        timelines = sync_store.get_new_timelines(ranges, limit=ctx.filter.timeline_limit)
        rooms = {nid: events[-1].stream_ordering or 0 for nid, events in timelines.items()}
        return News(rooms=rooms, timelines=timelines, ranges=ranges)
    candidates = [m.room_nid for m in joined] + [m.room_nid for m in leaves]
    return News(
        rooms=sync_store.get_rooms_with_new_events(candidates, after=since.events, upto=ctx.now.events)
    )


def find_newly_joined(ctx: SyncContext, joined: Sequence[MembershipInfo]) -> set[int]:
    """Rooms the user was not joined to at ``since`` (they get full state); none on an initial sync."""
    since = ctx.since
    if since is None:
        return set()
    recent = [m.room_nid for m in joined if m.stream_ordering > since.events]
    if not recent:
        return set()
    firsts = sync_store.get_first_own_member_event_after(ctx.user_id, recent, since.events)
    key: StateKey = (MEMBER, ctx.user_id)
    wanted = {e.state_group_before: [key] for e in firsts.values() if e.state_group_before is not None}
    at = timeline_store.get_state_ids_at_groups(wanted) if wanted else {}
    prior_nids = {
        nid: at.get(e.state_group_before, {}).get(key) if e.state_group_before is not None else None
        for nid, e in firsts.items()
    }
    loaded = event_store.get_events_by_nids([n for n in prior_nids.values() if n is not None])
    out: set[int] = set()
    for nid in recent:
        prior = prior_nids.get(nid)
        before = loaded[prior].event.membership if prior is not None and prior in loaded else None
        if before != "join":
            out.add(nid)
    return out


def plan_rooms(
    ctx: SyncContext,
    *,
    joined: Sequence[MembershipInfo],
    leaves: Sequence[MembershipInfo],
    news: News,
    newly_joined: set[int],
) -> dict[int, RoomPlan]:
    """Per room nid (joined rooms first, in membership order): what its entry holds.

    A left room's timeline ends at the user's departure (spec: they see nothing after it).
    """
    since = ctx.since
    plans: dict[int, RoomPlan] = {}
    for m in joined:
        timeline_range: StreamRange | None = None
        full_state = since is None or ctx.full_state or m.room_nid in newly_joined
        if full_state:
            # Spec: a newly joined room is synced as from scratch (its recent history, full state).
            after = None if since is None or m.room_nid in newly_joined else since.events
            timeline_range = (after, ctx.now.events)
        elif m.room_nid in news.rooms:
            assert since is not None
            timeline_range = (since.events, ctx.now.events)
        plans[m.room_nid] = RoomPlan(m, JOIN, full_state, timeline_range)
    for m in leaves:
        full_state = since is None or ctx.full_state
        timeline_range = (None if since is None else since.events, m.stream_ordering)
        plans[m.room_nid] = RoomPlan(m, LEAVE, full_state, timeline_range)
    return plans

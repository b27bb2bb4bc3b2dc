"""Rooms' timelines in a sync: the newest events of each room's range, cut to the filter's
limit (``limited`` when cut), filtered, and hidden where history visibility says so
(spec "Syncing", "Filtering", "History visibility")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dagcore.actions.room_access import RoomReader, filter_visible_events
from dagcore.store import sync as sync_store
from dagcore.store.events import StoredEvent
from dagcore.sync.context import SyncContext
from dagcore.sync.plan import LEAVE, News, RoomPlan, StreamRange
from dagcore.sync.tokens import RoomToken


@dataclass(frozen=True)
class RoomTimeline:
    events: list[StoredEvent] = field(default_factory=list)
    limited: bool = False


EMPTY_TIMELINE = RoomTimeline()


@dataclass(frozen=True)
class Timelines:
    """Per room nid, its timeline (rooms without one are absent)."""

    rooms: dict[int, RoomTimeline] = field(default_factory=dict)
    #: Per room, ``(after, events)``: every timeline event of the room in ``(after, now]``,
    #: before any per-user filtering — for rooms whose timeline query was unfiltered and
    #: not cut, so the unread counts and device lists use it instead of reading them again.
    complete: dict[int, tuple[int, list[StoredEvent]]] = field(default_factory=dict)

    def of(self, room_nid: int) -> RoomTimeline:
        return self.rooms.get(room_nid, EMPTY_TIMELINE)


def load_timelines(ctx: SyncContext, plans: Mapping[int, RoomPlan], news: News) -> Timelines:
    """The timeline of every planned room with a range the filter allows; ranges that
    :func:`~dagcore.sync.plan.find_news` read already are not read again."""
    tf = ctx.filter.room.timeline
    limit = ctx.filter.timeline_limit
    ranges: dict[int, StreamRange] = {}
    recent: dict[int, list[StoredEvent]] = {}
    for nid, plan in plans.items():
        if plan.timeline_range is not None and tf.allows_room(plan.m.room_id):
            ranges[nid] = plan.timeline_range
            if news.ranges.get(nid) == plan.timeline_range:
                recent[nid] = list(news.timelines.get(nid, ()))
    if not ranges:
        return Timelines()
    timeline_filter = ctx.timeline_filter
    to_read = {nid: span for nid, span in ranges.items() if nid not in recent}
    if to_read:
        recent.update(sync_store.get_recent_events(to_read, limit=limit, timeline_filter=timeline_filter))
    rooms: dict[int, RoomTimeline] = {}
    complete: dict[int, tuple[int, list[StoredEvent]]] = {}
    for nid, events in recent.items():
        limited = False
        if len(events) > limit:
            limited = True
            events = events[-limit:]
        else:
            after, upto = ranges[nid]
            if not timeline_filter.filters_anything and upto == ctx.now.events:
                # No lower bound: the room's whole timeline (stream positions start at 1).
                complete[nid] = (after if after is not None else 0, list(events))
        if tf.contains_url is not None:
            events = [e for e in events if ("url" in e.event.content) == tf.contains_url]
        rooms[nid] = RoomTimeline(events, limited)
    return Timelines(rooms, complete)


def filter_visibility(ctx: SyncContext, plans: Mapping[int, RoomPlan], timelines: Timelines) -> Timelines:
    """History visibility (``dagcore.actions.room_access``) where it can matter: timelines
    reaching back before the user's current membership, and rooms they left.

    One call for all rooms: the decision depends on each event's own state
    (its ``state_group_before``) and on the reader's user, not on the room, and
    a departed user's timeline range already ends at their departure.
    """
    needing = [
        nid
        for nid, plan in plans.items()
        if (events := timelines.of(nid).events)
        and (plan.section == LEAVE or (events[0].stream_ordering or 0) < plan.m.stream_ordering)
    ]
    if not needing:
        return timelines
    first = plans[needing[0]].m.room_nid
    room = sync_store.get_rooms_by_nids([first]).get(first)
    if room is None:
        return timelines
    reader = RoomReader(
        room=room,
        user_id=ctx.user_id,
        membership="join",
        max_stream=None,
        is_peeking=False,
        state_group=room.current_state_group,
    )
    candidates = [e for nid in needing for e in timelines.rooms[nid].events]
    # The visible events as served: an erased sender's may come back pruned.
    visible = {e.nid: e for e in filter_visible_events(reader, candidates)}
    rooms = dict(timelines.rooms)
    for nid in needing:
        t = rooms[nid]
        rooms[nid] = replace(t, events=[visible[e.nid] for e in t.events if e.nid in visible])
    return replace(timelines, rooms=rooms)


def timeline_entry(ctx: SyncContext, timeline: RoomTimeline, events: list[dict[str, Any]]) -> dict[str, Any]:
    """A room's ``timeline`` (its serialised ``events``); ``prev_batch`` paginates back from its
    first event (``/messages``), or from now when it has none."""
    if timeline.events:
        first = timeline.events[0]
        prev_batch = str(RoomToken(first.depth, max((first.stream_ordering or 1) - 1, 0)))
    else:
        prev_batch = str(ctx.now)
    return {"events": events, "limited": timeline.limited, "prev_batch": prev_batch}

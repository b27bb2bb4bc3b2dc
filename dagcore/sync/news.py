"""Answering a long-poll from the timeline events that woke it (issue #12: "answer a wake
from the change that woke it instead of rebuilding every section from scratch").

When a message arrives in a busy room, every member's long-poll wakes, and each full
build (``dagcore.sync.engine``) reads again what its previous answer read a moment ago:
the streams' positions, the memberships, the ignored users, the push rules' version and
the device's key counts. When the only changes that concern the sync since that answer
are new timeline events of rooms it is joined to, those reads would find what the answer
found (every change that could move them passes through the notifier, DESIGN.md §5), and
every other section would be empty. So the answer keeps them (``dagcore.sync.basis.SyncBasis``)
with the unread counters it counted, and the follower reads only the new events (shared
with the other members woken by them) and counts on from those counters:
:func:`answer_from_news`.

It answers only where the full build's answer is plain to tell from that (spec "Syncing"):
new non-state events, no timeline filter, no ignored users, no more events than the
timeline limit; with lazy-loaded members, the senders' member events come as a build
finds them (``room_state``). Otherwise it returns None and the caller builds as
usual. Its ``next_batch`` moves the events stream only: the other streams had nothing for
this sync, and a token may lag behind the streams' positions (the next build reads from it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dagcore.actions import push_rules as push_actions
from dagcore.store import sync as sync_store
from dagcore.store.events import StoredEvent
from dagcore.store.sync import MembershipInfo
from dagcore.sync.basis import SyncBasis, TimelineNews
from dagcore.sync.context import SyncContext, SyncRequest
from dagcore.sync.e2ee_counts import e2ee_count_fields
from dagcore.sync.engine import SyncResult
from dagcore.sync.plan import JOIN, RoomPlan
from dagcore.sync.room_state import build_state_ids
from dagcore.sync.rooms import join_entry, serialize_rooms
from dagcore.sync.timeline import RoomTimeline, Timelines
from dagcore.sync.unread import get_room_unread_counts, room_ref

#: Events whose arrival changes more than the timeline of a sync (state, and redactions,
#: which change earlier events) are answered by a full build.
REDACTION = "m.room.redaction"


def answer_from_news(
    request: SyncRequest, basis: SyncBasis, news: TimelineNews, *, now_ms: int
) -> SyncResult | None:
    """The answer to ``request`` (which follows ``basis``'s answer) given ``news``, or None
    where only a full build can tell (see the module)."""
    tf = request.filter.room.timeline
    if (
        request.full_state
        or basis.ignored
        or tf.contains_url is not None
        or news.upto <= basis.now.events
        or not news.rooms
    ):
        return None
    ctx = SyncContext(
        user_id=request.user_id,
        device_id=request.device_id,
        device_key=request.device_key,
        since=basis.now,
        now=basis.now.copy_with(events=news.upto),
        full_state=False,
        filter=request.filter,
        now_ms=now_ms,
        ignored=basis.ignored,
    )
    if ctx.timeline_filter.filters_anything:
        return None
    rooms: list[MembershipInfo] = []
    for room_id in sorted(news.rooms):
        m = basis.joined.get(room_id)
        if m is None or not tf.allows_room(room_id):
            return None
        rooms.append(m)
    limit = request.filter.timeline_limit
    after = basis.now.events
    # Shared with the other members woken by the same events (same range, same limit).
    loaded = sync_store.get_recent_events({m.room_nid: (after, news.upto) for m in rooms}, limit=limit)
    timelines: dict[int, list[StoredEvent]] = {}
    for m in rooms:
        events = loaded.get(m.room_nid, [])
        if not events or len(events) > limit:
            return None
        if any(e.event.state_key is not None or e.event.type == REDACTION for e in events):
            return None
        timelines[m.room_nid] = events
    counts, unread = _count(ctx, basis, rooms, timelines)
    # The steps of a build's rooms section that can have anything to say here: state (with
    # lazy-loading, the senders' member events this device was not sent yet) and serialising.
    plans = {m.room_nid: RoomPlan(m, JOIN, False, (after, news.upto)) for m in rooms}
    shown = Timelines({nid: RoomTimeline(events, False) for nid, events in timelines.items()})
    state_ids = build_state_ids(ctx, plans, shown, {})
    serialized = serialize_rooms(ctx, plans.values(), shown, state_ids)
    join = {
        m.room_id: join_entry(
            ctx,
            shown.of(m.room_nid),
            serialized[m.room_nid],
            ephemeral=[],
            account_data=[],
            summary=None,
            counts=counts.get(m.room_nid),
        )
        for m in rooms
    }
    body: dict[str, Any] = {"rooms": {"join": join}, "next_batch": str(ctx.now)}
    body.update(e2ee_count_fields(basis.e2e_counts))
    return SyncResult(body, True, ctx.now, basis.watch, basis=replace(basis, now=ctx.now, unread=unread))


def _count(
    ctx: SyncContext, basis: SyncBasis, rooms: list[MembershipInfo], timelines: dict[int, list[StoredEvent]]
) -> tuple[dict[int, push_actions.UnreadCounts], dict[int, push_actions.KeptCounter]]:
    """The rooms' unread counts as of ``ctx.now``, and the counters kept for the next answer.

    A room whose counter the basis kept counts on from it without the database: its
    receipts did not change since (that would have come through the notifier instead of
    timeline news alone), and ``timelines`` holds every event after it. Others are counted
    as a build counts them (the counters and receipts are read).
    """
    counts: dict[int, push_actions.UnreadCounts] = {}
    unread = dict(basis.unread)
    to_read: list[MembershipInfo] = []
    for m in rooms:
        kept = basis.unread.get(m.room_nid)
        onwards = (
            push_actions.count_onwards(
                user_id=ctx.user_id,
                room=room_ref(m),
                kept=kept,
                events=timelines[m.room_nid],
                upto=ctx.now.events,
                ruleset=basis.push_rules.ruleset,
                rules_version=basis.push_rules.version,
                ignored_users=ctx.ignored,
            )
            if kept is not None
            else None
        )
        if onwards is None:
            to_read.append(m)
        else:
            counts[m.room_nid], unread[m.room_nid] = onwards
    if to_read:
        counts.update(
            get_room_unread_counts(
                ctx,
                basis.push_rules,
                to_read,
                rooms_with_news={m.room_nid: timelines[m.room_nid][-1].stream_ordering or 0 for m in to_read},
                complete={m.room_nid: (basis.now.events, timelines[m.room_nid]) for m in to_read},
                kept=unread,
            )
        )
    return counts, unread

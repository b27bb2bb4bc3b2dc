"""The ``rooms`` section: ``join``, ``leave``, ``invite`` and ``knock`` (spec "Syncing").

Joined and left rooms go through the same steps, each a function of what the earlier
ones returned: plan (:mod:`.plan`), timelines (:mod:`.timeline`), summaries, state,
ephemeral events, account data, unread counts, then one serialisation of every room's
events together (a bounded number of queries for any number of rooms).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagcore.actions.push_rules import KeptCounter, UnreadCounts
from dagcore.store import events as event_store
from dagcore.store import sync as sync_store
from dagcore.store.events import StoredEvent
from dagcore.store.sync import MembershipInfo
from dagcore.sync.account_data import build_room_account_data
from dagcore.sync.context import PushRules, SyncContext
from dagcore.sync.ephemeral import build_ephemeral
from dagcore.sync.invites import build_stripped_rooms
from dagcore.sync.plan import JOIN, LEAVE, RoomPlan, find_newly_joined, find_news, plan_rooms
from dagcore.sync.room_state import StateIds, build_state_ids
from dagcore.sync.serialize import event_batch, format_events
from dagcore.sync.summary import build_summaries
from dagcore.sync.timeline import RoomTimeline, Timelines, filter_visibility, load_timelines, timeline_entry
from dagcore.sync.unread import get_room_unread_counts, unread_fields

#: Memberships whose rooms the long-poll watches (their changes concern this sync).
WATCHED = ("join", "invite", "knock")


def memberships_in_view(ctx: SyncContext, memberships: Iterable[MembershipInfo]) -> list[MembershipInfo]:
    """The user's memberships this sync answers for: the rooms the filter allows, as of ``ctx.now``."""
    return [
        m
        for m in memberships
        # A membership newer than our snapshot of the streams shows in the next sync.
        if m.stream_ordering <= ctx.now.events and ctx.filter.room.allows_room(m.room_id)
    ]


@dataclass(frozen=True)
class RoomSelection:
    """The rooms of each section (before any of their content is read)."""

    joined: list[MembershipInfo]
    leaves: list[MembershipInfo]
    invites: list[MembershipInfo]
    knocks: list[MembershipInfo]


def select_rooms(ctx: SyncContext, memberships: Sequence[MembershipInfo]) -> RoomSelection:
    """Every joined room (the quiet ones are dropped later); invites, knocks and departures
    since the token (all of them initially, departures only with ``include_leave``), except
    invites from ignored users and rooms the user forgot."""
    since = ctx.since

    def changed(m: MembershipInfo) -> bool:
        return since is None or m.stream_ordering > since.events

    joined = [m for m in memberships if m.membership == "join"]
    invites = [
        m for m in memberships if m.membership == "invite" and changed(m) and m.sender not in ctx.ignored
    ]
    knocks = [m for m in memberships if m.membership == "knock" and changed(m)]
    if since is None:
        leaves = (
            [m for m in memberships if m.membership in ("leave", "ban")]
            if ctx.filter.room.include_leave
            else []
        )
    else:
        leaves = [m for m in memberships if m.membership in ("leave", "ban") and changed(m)]
    if leaves:
        forgotten = sync_store.get_forgotten_room_nids(ctx.user_id, [m.room_nid for m in leaves])
        leaves = [m for m in leaves if m.room_nid not in forgotten]
    return RoomSelection(joined=joined, leaves=leaves, invites=invites, knocks=knocks)


@dataclass(frozen=True)
class RoomsSection:
    body: dict[str, Any]
    #: Rooms with timeline events since the token (incremental syncs), newest position each.
    rooms_with_news: Mapping[int, int]
    #: Complete timelines read (``Timelines.complete``): the device lists reuse them.
    complete: Mapping[int, tuple[int, list[StoredEvent]]]
    #: The counters of the rooms counted, as of ``ctx.now`` (``dagcore.sync.basis.SyncBasis``).
    kept: Mapping[int, KeptCounter]


def build_rooms(
    ctx: SyncContext, push_rules: PushRules, memberships: Sequence[MembershipInfo]
) -> RoomsSection:
    """The ``rooms`` section of the sync for ``memberships`` (see :func:`memberships_in_view`)."""
    selection = select_rooms(ctx, memberships)
    newly_joined = find_newly_joined(ctx, selection.joined)
    news = find_news(ctx, joined=selection.joined, leaves=selection.leaves)
    plans = plan_rooms(
        ctx, joined=selection.joined, leaves=selection.leaves, news=news, newly_joined=newly_joined
    )
    loaded = load_timelines(ctx, plans, news)
    timelines = filter_visibility(ctx, plans, loaded)
    summaries = build_summaries(ctx, plans, timelines)
    state_ids = build_state_ids(ctx, plans, timelines, summaries)
    ephemeral = build_ephemeral(ctx, plans)
    account_data = build_room_account_data(ctx, plans)

    joined_plans = [p for p in plans.values() if p.section == JOIN]
    included = [
        p
        for p in joined_plans
        if ctx.initial
        or p.full_state
        or timelines.of(p.m.room_nid).events
        or state_ids.get(p.m.room_nid)
        or ephemeral.get(p.m.room_nid)
        or account_data.get(p.m.room_nid)
    ]
    kept: dict[int, KeptCounter] = {}
    counts = get_room_unread_counts(
        ctx,
        push_rules,
        [p.m for p in included],
        rooms_with_news=news.rooms,
        complete=loaded.complete,
        kept=kept,
    )
    serialized = serialize_rooms(ctx, plans.values(), timelines, state_ids)

    join_out: dict[str, Any] = {}
    for p in included:
        nid = p.m.room_nid
        join_out[p.m.room_id] = join_entry(
            ctx,
            timelines.of(nid),
            serialized[nid],
            ephemeral=ephemeral.get(nid, []),
            account_data=account_data.get(nid, []),
            summary=summaries.get(nid),
            counts=counts.get(nid),
        )
    leave_out: dict[str, Any] = {}
    for p in plans.values():
        if p.section != LEAVE:
            continue
        nid = p.m.room_nid
        timeline_events, state_events = serialized[nid]
        leave_out[p.m.room_id] = {
            "timeline": timeline_entry(ctx, timelines.of(nid), timeline_events),
            "state": event_batch(state_events),
            "account_data": event_batch(account_data.get(nid, [])),
        }
    invite_out, knock_out = build_stripped_rooms(invites=selection.invites, knocks=selection.knocks)

    sections = {"join": join_out, "leave": leave_out, "invite": invite_out, "knock": knock_out}
    body = {key: section for key, section in sections.items() if section}
    return RoomsSection(body=body, rooms_with_news=news.rooms, complete=loaded.complete, kept=kept)


def join_entry(
    ctx: SyncContext,
    timeline: RoomTimeline,
    serialized: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    *,
    ephemeral: list[dict[str, Any]],
    account_data: list[dict[str, Any]],
    summary: dict[str, Any] | None,
    counts: UnreadCounts | None,
) -> dict[str, Any]:
    """A joined room's entry (spec "Syncing": ``JoinedRoom``) from its parts; ``serialized``:
    its timeline and state events as :func:`serialize_rooms` gives them."""
    timeline_events, state_events = serialized
    entry: dict[str, Any] = {
        "timeline": timeline_entry(ctx, timeline, timeline_events),
        "state": event_batch(state_events),
        "ephemeral": event_batch(ephemeral),
        "account_data": event_batch(account_data),
    }
    if summary is not None:
        entry["summary"] = summary
    if counts is not None:
        entry.update(unread_fields(ctx, counts))
    return entry


def serialize_rooms(
    ctx: SyncContext,
    plans: Iterable[RoomPlan],
    timelines: Timelines,
    state_ids: Mapping[int, StateIds],
) -> dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Per room nid, its timeline and state events serialised (the state filter applied, state
    already in the timeline left out); every room's events are loaded and annotated together."""
    plans = list(plans)
    all_state_nids = {n for p in plans for n in state_ids.get(p.m.room_nid, {}).values()}
    loaded = event_store.get_events_by_nids(all_state_nids) if all_state_nids else {}
    sf = ctx.filter.room.state
    state_lists: dict[int, list[StoredEvent]] = {}
    for p in plans:
        nid = p.m.room_nid
        timeline_ids = {e.event_id for e in timelines.of(nid).events}
        events = [loaded[n] for n in state_ids.get(nid, {}).values() if n in loaded]
        state_lists[nid] = sorted(
            (
                e
                for e in events
                if e.event_id not in timeline_ids
                and sf.allows_room(p.m.room_id)
                and sf.matches(event_type=e.event.type, sender=e.event.sender)
            ),
            key=lambda e: (e.event.type, e.event.state_key or ""),
        )
    all_timeline = [e for p in plans for e in timelines.of(p.m.room_nid).events]
    all_state = [e for events in state_lists.values() for e in events]
    timeline_json = format_events(ctx, all_timeline, timeline_events=True)
    state_json = format_events(ctx, all_state, timeline_events=False)
    out: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    ti = si = 0
    for p in plans:
        nid = p.m.room_nid
        n_t = len(timelines.of(nid).events)
        n_s = len(state_lists[nid])
        out[nid] = (timeline_json[ti : ti + n_t], state_json[si : si + n_s])
        ti += n_t
        si += n_s
    return out

"""A room's ``state`` in a sync (spec "Syncing", "Lazy-loading room members").

* Full state: the state at the start of the timeline (initial syncs, ``full_state``,
  rooms joined since the token).
* A gap (``limited`` timeline): the state that changed between ``since`` and the start of
  the timeline.
* Otherwise: nothing but, with lazy-loading, the members the timeline's senders need.

Lazy-loading keeps only the member events of the timeline's senders, the user (on full
state) and the heroes, and skips those this device was already sent (``memory.sent_members``)
unless ``include_redundant_members``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagcore.protocol.events import StateKey
from dagcore.store import sync as sync_store
from dagcore.store import timeline as timeline_store
from dagcore.sync.context import SyncContext
from dagcore.sync.memory import sent_members
from dagcore.sync.plan import JOIN, MEMBER, RoomPlan
from dagcore.sync.timeline import Timelines

#: Per room nid, the state to send: ``(type, state_key) -> event nid``.
StateIds = dict[StateKey, int]


def build_state_ids(
    ctx: SyncContext,
    plans: Mapping[int, RoomPlan],
    timelines: Timelines,
    summaries: Mapping[int, dict[str, Any]],
) -> dict[int, StateIds]:
    """Per room nid, the state events (by nid) its entry carries (before the state filter)."""
    since = ctx.since
    sf = ctx.filter.room.state
    lazy = sf.lazy_load_members
    start_group: dict[int, int | None] = {}
    missing_start: dict[int, int] = {}
    for nid, plan in plans.items():
        events = timelines.of(nid).events
        if events:
            start_group[nid] = events[0].state_group_before
        elif plan.section == JOIN:
            start_group[nid] = plan.m.current_state_group
        else:
            missing_start[nid] = plan.m.stream_ordering
    if missing_start:
        start_group.update(sync_store.get_state_groups_at_stream(missing_start))
    # Rooms shown with all their state, or with the state of their gap.
    whole = [nid for nid, plan in plans.items() if plan.full_state or timelines.of(nid).limited]
    delta_rooms = [nid for nid in whole if not plans[nid].full_state]
    since_group: dict[int, int | None] = {}
    if delta_rooms and since is not None:
        since_group = sync_store.get_state_groups_at_stream({nid: since.events for nid in delta_rooms})
    full_groups = {start_group[nid] for nid in whole}
    full_groups |= set(since_group.values())
    states = sync_store.get_full_state_ids(g for g in full_groups if g is not None)

    # Which members lazy-loading wants: timeline senders, the user on full state, the heroes.
    wanted_members: dict[int, set[str]] = {}
    if lazy:
        for nid, plan in plans.items():
            users = {e.event.sender for e in timelines.of(nid).events}
            if plan.full_state:
                users.add(ctx.user_id)
            users.update(summaries.get(nid, {}).get("m.heroes", ()))
            wanted_members[nid] = users

    out: dict[int, StateIds] = {}
    lookups: dict[int, list[StateKey]] = {}
    for nid, plan in plans.items():
        group = start_group.get(nid)
        if plan.full_state or timelines.of(nid).limited:
            start = states.get(group, {}) if group is not None else {}
            if plan.full_state:
                ids = dict(start)
            else:
                since_at = since_group.get(nid)
                before = states.get(since_at, {}) if since_at is not None else {}
                # Spec: the state between ``since`` and the start of the timeline.
                ids = {k: v for k, v in start.items() if before.get(k) != v}
            if lazy:
                gap_members = {k for k in ids if k[0] == MEMBER} if not plan.full_state else set()
                ids = {
                    k: v
                    for k, v in ids.items()
                    if k[0] != MEMBER or k[1] in wanted_members[nid] or k in gap_members
                }
                for user in wanted_members[nid]:
                    if (MEMBER, user) in start and (MEMBER, user) not in ids:
                        ids[(MEMBER, user)] = start[(MEMBER, user)]
            out[nid] = ids
        elif lazy and wanted_members.get(nid) and group is not None:
            lookups[group] = lookups.get(group, []) + [(MEMBER, u) for u in wanted_members[nid]]
        else:
            out[nid] = {}
    if lookups:
        at = timeline_store.get_state_ids_at_groups(lookups)
        for nid in plans:
            if nid in out:
                continue
            group = start_group.get(nid)
            found = at.get(group, {}) if group is not None else {}
            out[nid] = {k: v for k, v in found.items() if k[1] in wanted_members.get(nid, set())}
    if lazy and not sf.include_redundant_members:
        out = drop_redundant_members(ctx, plans, timelines, out)
    return out


def drop_redundant_members(
    ctx: SyncContext, plans: Mapping[int, RoomPlan], timelines: Timelines, state_ids: Mapping[int, StateIds]
) -> dict[int, StateIds]:
    """Lazy-loading: skip member events this device already has (gap members excepted), and
    remember what it is sent now (its state's members and its timeline's member events)."""
    out: dict[int, StateIds] = {}
    for nid, plan in plans.items():
        ids = state_ids[nid]
        timeline = timelines.of(nid)
        key = (ctx.user_id, ctx.device_key, nid)
        sent = {} if plan.full_state else sent_members.get(key)
        members = {k[1]: v for k, v in ids.items() if k[0] == MEMBER}
        if not plan.full_state and not timeline.limited:
            ids = {k: v for k, v in ids.items() if k[0] != MEMBER or sent.get(k[1]) != v}
        timeline_members = {
            e.event.state_key: e.nid
            for e in timeline.events
            if e.event.type == MEMBER and e.event.state_key is not None
        }
        sent_members.put(key, {**members, **timeline_members}, replace=plan.full_state)
        out[nid] = ids
    return out

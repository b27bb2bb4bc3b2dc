"""A joined room's ``summary`` (spec "Syncing": ``m.joined_member_count``,
``m.invited_member_count`` and, for rooms without a name, ``m.heroes``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagcore.protocol.events import StateKey
from dagcore.store import sync as sync_store
from dagcore.sync.context import SyncContext
from dagcore.sync.plan import JOIN, MEMBER, RoomPlan
from dagcore.sync.timeline import Timelines

NAMING_FIELDS: tuple[tuple[StateKey, str], ...] = (
    (("m.room.name", ""), "name"),
    (("m.room.canonical_alias", ""), "alias"),
)
NAMING_KEYS: tuple[StateKey, ...] = tuple(k for k, _ in NAMING_FIELDS)


def build_summaries(
    ctx: SyncContext, plans: Mapping[int, RoomPlan], timelines: Timelines
) -> dict[int, dict[str, Any]]:
    """Per joined room nid, its summary: sent with full state and whenever the membership may
    have changed (a member event in the timeline, or a gap before it)."""
    wanted = [
        plan
        for nid, plan in plans.items()
        if plan.section == JOIN
        and (
            plan.full_state
            or timelines.of(nid).limited
            or any(e.event.type == MEMBER for e in timelines.of(nid).events)
        )
    ]
    if not wanted:
        return {}
    nids = [p.m.room_nid for p in wanted]
    groups = {p.m.room_nid: p.m.current_state_group for p in wanted}
    counts = sync_store.get_membership_counts(nids, state_groups=groups)
    # Heroes name rooms that have no name: spec "required if the room's m.room.name or
    # m.room.canonical_alias state events are unset or empty".
    named = sync_store.get_current_state_for_rooms(nids, NAMING_KEYS, state_groups=groups)
    unnamed = [
        nid
        for nid in nids
        if not any(
            isinstance(e.content.get(field_name), str) and e.content.get(field_name)
            for e, field_name in ((named.get(nid, {}).get(k), f) for k, f in NAMING_FIELDS)
            if e is not None
        )
    ]
    heroes = sync_store.get_heroes(unnamed, exclude_user=ctx.user_id) if unnamed else {}
    out: dict[int, dict[str, Any]] = {}
    for nid in nids:
        c = counts.get(nid, {})
        summary: dict[str, Any] = {
            "m.joined_member_count": c.get("join", 0),
            "m.invited_member_count": c.get("invite", 0),
        }
        if nid in heroes:
            summary["m.heroes"] = heroes[nid]
        out[nid] = summary
    return out

"""Account data in a sync: the global ``account_data`` section and each room's own
(spec "Client Config"), the entries written since the token (all of them initially)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagcore.store import account_data as account_data_store
from dagcore.sync.context import PushRules, SyncContext
from dagcore.sync.plan import RoomPlan
from dagcore.sync.serialize import only_event_fields


def build_global_account_data(ctx: SyncContext, push_rules: PushRules) -> list[dict[str, Any]]:
    """The user's global account data events; ``m.push_rules`` carries the built ruleset."""
    if not ctx.moved("account_data"):
        return []
    af = ctx.filter.account_data
    entries = account_data_store.get_account_data_entries(
        user_id=ctx.user_id,
        after=None if ctx.since is None else ctx.since.account_data,
        upto=ctx.now.account_data,
        room_ids=(),
    )
    events: list[dict[str, Any]] = []
    seen_push_rules = False
    for entry in entries:
        if entry.room_id:
            continue
        content = entry.content
        if entry.type == account_data_store.PUSH_RULES_TYPE:
            seen_push_rules = True
            content = {"global": push_rules.ruleset}
        events.append({"type": entry.type, "content": content})
    if ctx.since is None and not seen_push_rules:
        # Clients read their rules from the initial sync (spec: "Push Rules: Events").
        events.append({"type": account_data_store.PUSH_RULES_TYPE, "content": {"global": push_rules.ruleset}})
    events = [e for e in events if af.matches(event_type=e["type"])]
    return only_event_fields(ctx, af.apply_limit(events))


def build_room_account_data(
    ctx: SyncContext, plans: Mapping[int, RoomPlan]
) -> dict[int, list[dict[str, Any]]]:
    """Per room nid with entries (joined or left rooms the filter allows), its account data events."""
    if not ctx.moved("account_data"):
        return {}
    af = ctx.filter.room.account_data
    nid_of = {p.m.room_id: nid for nid, p in plans.items() if af.allows_room(p.m.room_id)}
    if not nid_of:
        return {}
    entries = account_data_store.get_account_data_entries(
        user_id=ctx.user_id,
        after=None if ctx.since is None else ctx.since.account_data,
        upto=ctx.now.account_data,
        room_ids=nid_of,
        include_global=False,
    )
    out: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        if af.matches(event_type=entry.type):
            out.setdefault(nid_of[entry.room_id], []).append({"type": entry.type, "content": entry.content})
    return {nid: only_event_fields(ctx, af.apply_limit(events)) for nid, events in out.items()}

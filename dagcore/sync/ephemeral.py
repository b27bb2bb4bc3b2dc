"""Joined rooms' ``ephemeral`` events: ``m.typing`` and ``m.receipt`` (spec "Typing
Notifications", "Receipts"), of the rooms whose typing or receipts moved since the token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagcore.store import receipts as receipt_store
from dagcore.store import typing as typing_store
from dagcore.sync.context import SyncContext
from dagcore.sync.plan import JOIN, RoomPlan
from dagcore.sync.serialize import only_event_fields


def build_ephemeral(ctx: SyncContext, plans: Mapping[int, RoomPlan]) -> dict[int, list[dict[str, Any]]]:
    """Per joined room nid with something to say, its ephemeral events (filtered, limited)."""
    ef = ctx.filter.room.ephemeral
    joined = [nid for nid, p in plans.items() if p.section == JOIN and ef.allows_room(p.m.room_id)]
    if not joined:
        return {}
    since = ctx.since
    out: dict[int, list[dict[str, Any]]] = {}
    if ef.matches(event_type="m.typing") and ctx.moved("typing"):
        if since is None:
            typers = typing_store.get_typing_users(room_nids=joined, now=ctx.now_ms)
        else:
            changed = typing_store.get_typing_rooms_changed(
                room_nids=joined, after=since.typing, upto=ctx.now.typing
            )
            typers = typing_store.get_typing_users(room_nids=sorted(changed), now=ctx.now_ms)
            # A room whose typing changed and where nobody types now: the empty list says so.
            for nid in changed:
                typers.setdefault(nid, [])
        for nid, users in typers.items():
            out.setdefault(nid, []).append({"type": "m.typing", "content": {"user_ids": users}})
    if ef.matches(event_type="m.receipt") and ctx.moved("receipts"):
        rows = receipt_store.get_receipts_for_rooms(
            room_nids=joined,
            viewer=ctx.user_id,
            after=None if since is None else since.receipts,
            upto=ctx.now.receipts,
        )
        by_room: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row.user_id in ctx.ignored or (ef.senders is not None and row.user_id not in ef.senders):
                continue
            if row.user_id in ef.not_senders:
                continue
            data: dict[str, Any] = {"ts": row.ts}
            if row.thread_id:
                data["thread_id"] = row.thread_id
            content = by_room.setdefault(row.room_id, {})
            content.setdefault(row.event_id, {}).setdefault(row.receipt_type, {})[row.user_id] = data
        nid_of = {p.m.room_id: nid for nid, p in plans.items()}
        for room_id, content in by_room.items():
            out.setdefault(nid_of[room_id], []).append({"type": "m.receipt", "content": content})
    return {nid: only_event_fields(ctx, ef.apply_limit(events)) for nid, events in out.items()}

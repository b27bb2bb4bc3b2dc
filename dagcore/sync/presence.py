"""The ``presence`` section (spec "Presence"): the user's own presence and that of users
sharing a room with them — all of them initially, then those that changed since the token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagcore.actions.presence import presence_content, presence_enabled
from dagcore.store import presence as presence_store
from dagcore.store import rooms as room_store
from dagcore.store.sync import MembershipInfo
from dagcore.sync.context import SyncContext
from dagcore.sync.serialize import only_event_fields


def build_presence(ctx: SyncContext, memberships: Sequence[MembershipInfo]) -> list[dict[str, Any]]:
    """``m.presence`` events in stream order (none when the server has presence off)."""
    if not presence_enabled() or not ctx.moved("presence"):
        return []
    pf = ctx.filter.presence
    if not pf.matches(event_type="m.presence"):
        return []
    if ctx.since is None:
        joined = [m.room_nid for m in memberships if m.membership == "join"]
        rows = presence_store.get_current_presence_of_room_members(
            viewer=ctx.user_id, room_nids=joined, upto=ctx.now.presence
        )
    else:
        changed = presence_store.get_presence_changed(after=ctx.since.presence, upto=ctx.now.presence)
        visible = room_store.get_users_sharing_a_room(
            user_id=ctx.user_id, candidates=[r.user_id for r in changed]
        )
        rows = [r for r in changed if r.user_id in visible or r.user_id == ctx.user_id]
    events = [
        {"type": "m.presence", "sender": row.user_id, "content": presence_content(row, now=ctx.now_ms)}
        for row in sorted(rows, key=lambda r: r.stream_id)
        if pf.matches(event_type="m.presence", sender=row.user_id)
    ]
    return only_event_fields(ctx, pf.apply_limit(events))

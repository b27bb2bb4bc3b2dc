"""Joined rooms' ``unread_notifications`` and ``unread_thread_notifications`` (spec
"Receiving notifications", "Threading": per-thread counts with
``unread_thread_notifications`` in the timeline filter)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from dagcore.actions import push_rules as push_actions
from dagcore.store.events import StoredEvent
from dagcore.store.sync import MembershipInfo
from dagcore.sync.context import PushRules, SyncContext


def room_ref(m: MembershipInfo) -> push_actions.RoomRef:
    """What counting needs of a joined room, from the user's membership as a sync read it
    (its state group and the user's display name there included)."""
    return push_actions.RoomRef(
        m.room_nid, m.room_id, m.stream_ordering, m.current_state_group, m.displayname
    )


def get_room_unread_counts(
    ctx: SyncContext,
    push_rules: PushRules,
    rooms: Sequence[MembershipInfo],
    *,
    rooms_with_news: Collection[int],
    complete: Mapping[int, tuple[int, list[StoredEvent]]],
    kept: dict[int, push_actions.KeptCounter] | None = None,
) -> dict[int, push_actions.UnreadCounts]:
    """Per room nid, the user's counts up to ``ctx.now``.

    ``complete`` (every timeline event of a room after some position, as the timelines read
    them) and the rooms without news since the token are counted without reading events again.
    ``kept``: filled with what a later count can go on from (``push_rules.count_onwards``).
    """
    if not rooms:
        return {}
    loaded = dict(complete)
    if ctx.since is not None:
        # Rooms without news had no timeline events since ``since``: nothing to count there.
        for m in rooms:
            if m.room_nid not in rooms_with_news and m.room_nid not in loaded:
                loaded[m.room_nid] = (ctx.since.events, [])
    refs = [room_ref(m) for m in rooms]
    return push_actions.get_unread_counts(
        user_id=ctx.user_id,
        rooms=refs,
        upto=ctx.now.events,
        ruleset=push_rules.ruleset,
        ignored_users=ctx.ignored,
        rules_version=push_rules.version,
        loaded=loaded,
        displaynames_known=True,
        kept=kept,
    )


def unread_fields(ctx: SyncContext, counts: push_actions.UnreadCounts) -> dict[str, Any]:
    """A joined room's unread count fields: with ``unread_thread_notifications``, the main
    timeline's counts and each thread's apart; otherwise everything together."""
    if not ctx.filter.room.timeline.unread_thread_notifications:
        return {
            "unread_notifications": {
                "notification_count": counts.notification_count,
                "highlight_count": counts.highlight_count,
            }
        }
    out: dict[str, Any] = {
        "unread_notifications": {"notification_count": counts.main[0], "highlight_count": counts.main[1]}
    }
    if counts.threads:
        out["unread_thread_notifications"] = {
            root: {"notification_count": n, "highlight_count": h} for root, (n, h) in counts.threads.items()
        }
    return out

"""The ``device_lists`` section (spec "End-to-end encryption: Extensions to /sync"): users
whose devices changed or who now share a room with the user (``changed``), and users
who no longer share any (``left``), since the token. Initial syncs have none."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from dagcore.store import device_lists as device_list_store
from dagcore.store import rooms as room_store
from dagcore.store import sync as sync_store
from dagcore.store.events import StoredEvent
from dagcore.store.sync import MembershipInfo
from dagcore.sync.context import SyncContext
from dagcore.sync.plan import MEMBER


def build_device_lists(
    ctx: SyncContext,
    memberships: Sequence[MembershipInfo],
    *,
    rooms_with_news: Collection[int],
    complete: Mapping[int, tuple[int, list[StoredEvent]]],
) -> dict[str, Any]:
    """``{"changed": [...], "left": [...]}``, or ``{}`` when neither has anyone.

    ``rooms_with_news`` and ``complete`` are what the rooms section learnt (rooms with new
    events, complete timelines): member events are read only for rooms it did not read whole.
    """
    since = ctx.since
    if since is None:
        return {}
    changed: set[str] = set()
    left_candidates: set[str] = set()
    if ctx.moved("device_lists"):
        moved = device_list_store.get_changed_users(
            after=since.device_lists, upto=ctx.now.device_lists, viewer=ctx.user_id
        )
        if moved:
            changed |= room_store.get_users_sharing_a_room(user_id=ctx.user_id, candidates=moved)
            if ctx.user_id in moved:
                changed.add(ctx.user_id)
    if ctx.moved("events"):
        joined = [m.room_nid for m in memberships if m.membership == "join"]
        own_changes = [m for m in memberships if m.stream_ordering > since.events]
        newly = [m.room_nid for m in own_changes if m.membership == "join"]
        gone = [m.room_nid for m in own_changes if m.membership in ("leave", "ban")]
        if newly:
            changed |= sync_store.get_joined_user_ids(newly, exclude_user=ctx.user_id)
        if gone:
            left_candidates |= sync_store.get_joined_user_ids(gone, exclude_user=ctx.user_id)
        with_news = [nid for nid in joined if nid in rooms_with_news]
        for _, user, membership in member_events_since(ctx, with_news, complete=complete):
            if user == ctx.user_id:
                continue
            if membership == "join":
                changed.add(user)
            elif membership in ("leave", "ban"):
                left_candidates.add(user)
    left: set[str] = set()
    if left_candidates:
        still = room_store.get_users_sharing_a_room(user_id=ctx.user_id, candidates=left_candidates)
        left = left_candidates - still
        changed -= left
    if not changed and not left:
        return {}
    return {"changed": sorted(changed), "left": sorted(left)}


def member_events_since(
    ctx: SyncContext, room_nids: Sequence[int], *, complete: Mapping[int, tuple[int, list[StoredEvent]]]
) -> list[tuple[int, str, str]]:
    """``(room nid, user, membership)`` of member events in these rooms in ``(since, now]``:
    complete timelines from ``since`` already hold them, the other rooms are read."""
    assert ctx.since is not None
    out: list[tuple[int, str, str]] = []
    to_read = []
    for nid in room_nids:
        have = complete.get(nid)
        if have is None or have[0] != ctx.since.events:
            to_read.append(nid)
            continue
        for e in have[1]:
            if e.event.type == MEMBER and e.event.state_key is not None:
                content = e.event.content
                membership = content.get("membership") if isinstance(content, dict) else None
                out.append((nid, e.event.state_key, membership if isinstance(membership, str) else "leave"))
    out.extend(sync_store.get_member_events_between(to_read, after=ctx.since.events, upto=ctx.now.events))
    return out

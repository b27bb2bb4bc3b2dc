"""Inputs of the sync engine's sections, as a sync would gather them (no HTTP)."""

from __future__ import annotations

from dataclasses import dataclass

from dagcore.actions.filters import DEFAULT_FILTER, SyncFilter
from dagcore.clock import now_ms
from dagcore.models import User
from dagcore.store import sync as sync_store
from dagcore.store.streams import get_stream_positions
from dagcore.store.sync import MembershipInfo, SyncStart
from dagcore.sync.context import (
    START_ACCOUNT_DATA_TYPES,
    PushRules,
    SyncContext,
    SyncRequest,
    make_context,
    push_rules_of,
)
from dagcore.sync.rooms import memberships_in_view
from dagcore.sync.tokens import SyncToken


@dataclass(frozen=True)
class Inputs:
    ctx: SyncContext
    start: SyncStart
    memberships: list[MembershipInfo]
    push_rules: PushRules


def inputs(
    user: User,
    since: SyncToken | None = None,
    *,
    sync_filter: SyncFilter = DEFAULT_FILTER,
    device_id: str | None = "DEV",
    device_key: str = "DEV",
    full_state: bool = False,
) -> Inputs:
    """What the engine hands its sections for a sync of ``user`` from ``since``, now."""
    request = SyncRequest(
        user_id=user.user_id,
        device_id=device_id,
        device_key=device_key,
        since=since,
        full_state=full_state,
        filter=sync_filter,
    )
    start = sync_store.get_sync_start(
        user_id=user.user_id, device_id=device_id, account_data_types=START_ACCOUNT_DATA_TYPES
    )
    ctx = make_context(request=request, start=start, now_ms=now_ms())
    return Inputs(
        ctx,
        start,
        memberships_in_view(ctx, start.memberships),
        push_rules_of(user.user_id, start.account_data),
    )


def now_token() -> SyncToken:
    """The streams' current positions (what a sync now would hand out as ``next_batch``)."""
    return SyncToken.from_positions(get_stream_positions())


def room_nid(inp: Inputs, room_id: str) -> int:
    (nid,) = [m.room_nid for m in inp.memberships if m.room_id == room_id]
    return nid

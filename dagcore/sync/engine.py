"""A ``/sync`` response from (user, device, since token, filter) (spec: client-server API
"Syncing", "Filtering", "Lazy-loading room members" and the sync extensions of the modules).

A sync token holds a position for each stream (:class:`~dagcore.sync.tokens.SyncToken`).
An incremental sync asks each stream "what changed after your position, up to mine"
through indexes over that stream (events by stream ordering, receipts, typing, account
data, presence, to-device and device-list rows by their stream IDs), and touches only
rooms where something changed: its cost does not grow with the number of quiet rooms
the user is in. An initial sync of N rooms costs a bounded number of queries in total
(per-room subqueries are merged into one statement by ``dagcore.store.sync``).

Each section is a function of the :class:`~dagcore.sync.context.SyncContext` and of what
it is handed; this module reads what every sync reads first, runs the sections and puts
their answers together. Everything here is synchronous database work: the caller runs it
in a thread and does any waiting (long-poll).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagcore.actions import presence as presence_actions
from dagcore.actions.push_rules import KeptCounter
from dagcore.clock import now_ms
from dagcore.store import sync as sync_store
from dagcore.sync.account_data import build_global_account_data
from dagcore.sync.basis import SyncBasis
from dagcore.sync.context import START_ACCOUNT_DATA_TYPES, SyncRequest, make_context, push_rules_of
from dagcore.sync.device_lists import build_device_lists
from dagcore.sync.e2ee_counts import e2ee_count_fields
from dagcore.sync.presence import build_presence
from dagcore.sync.rooms import WATCHED, build_rooms, memberships_in_view
from dagcore.sync.serialize import event_batch
from dagcore.sync.to_device import acknowledge_to_device, build_to_device
from dagcore.sync.tokens import SyncToken


@dataclass(frozen=True)
class SyncResult:
    #: The response body (``next_batch`` included).
    body: dict[str, Any]
    #: Whether the body tells the client anything new (else a long-poll may wait).
    has_news: bool
    next_batch: SyncToken
    #: Rooms whose changes concern this sync (the long-poll waits on them).
    room_ids: frozenset[str]
    #: Whether ``next_batch`` is the streams' positions this sync read: False when it stops
    #: short (a to-device backlog goes out over several syncs), so a sync from it has news
    #: although nothing changed.
    complete: bool = True
    #: What a sync that follows this answer can start from when only new timeline events
    #: happened since (``dagcore.sync.news``); None when ``complete`` is False.
    basis: SyncBasis | None = None


def _read_start(request: SyncRequest) -> sync_store.SyncStart:
    """What every sync reads first; with ``request.presence``, the user's presence is read in
    the same round trip and written only when it must change (spec "Presence": ``set_presence``).

    A write that moves the presence stream is made before the positions this sync answers
    up to are read again, so the sync shows it (as when presence was written first).
    """
    with_presence = request.presence is not None

    def read() -> sync_store.SyncStart:
        return sync_store.get_sync_start(
            user_id=request.user_id,
            device_id=request.device_id,
            account_data_types=START_ACCOUNT_DATA_TYPES,
            with_presence=with_presence,
        )

    start = read()
    if request.presence is None or presence_actions.sync_presence_is_current(
        current=start.presence, wanted=request.presence, now=now_ms()
    ):
        return start
    moved = presence_actions.do_set_presence(user_id=request.user_id, state=request.presence, from_sync=True)
    return read() if moved else start


def build_sync_response(*, request: SyncRequest) -> SyncResult:
    """The answer to ``request``, as of the streams' positions when it starts."""
    # One round trip for what every sync reads first (stream positions, memberships,
    # ignored users and push rules' version, the device's key counts).
    start = _read_start(request)
    ctx = make_context(request=request, start=start, now_ms=now_ms())
    memberships = memberships_in_view(ctx, start.memberships)
    watch = frozenset(m.room_id for m in memberships if m.membership in WATCHED)
    body: dict[str, Any] = {}
    push_rules = push_rules_of(ctx.user_id, start.account_data)

    def basis(now: SyncToken, unread: Mapping[int, KeptCounter] | None = None) -> SyncBasis | None:
        return SyncBasis.of(ctx, now=now, memberships=memberships, watch=watch, push_rules=push_rules,
                            e2e_counts=start.e2e_counts, unread=unread)  # fmt: skip

    if ctx.since is not None and ctx.since == ctx.now and not ctx.full_state:
        body["next_batch"] = str(ctx.now)
        acknowledge_to_device(ctx)
        body.update(e2ee_count_fields(start.e2e_counts))
        return SyncResult(body, False, ctx.now, watch, basis=basis(ctx.now))

    rooms = build_rooms(ctx, push_rules, memberships)
    if rooms.body:
        body["rooms"] = rooms.body
    presence = build_presence(ctx, memberships)
    if presence:
        body["presence"] = event_batch(presence)
    account_data = build_global_account_data(ctx, push_rules)
    if account_data:
        body["account_data"] = event_batch(account_data)
    to_device, to_device_position = build_to_device(ctx)
    if to_device:
        body["to_device"] = event_batch(to_device)
    next_batch = ctx.now.copy_with(to_device=to_device_position)
    device_lists = build_device_lists(
        ctx, memberships, rooms_with_news=rooms.rooms_with_news, complete=rooms.complete
    )
    if device_lists:
        body["device_lists"] = device_lists
    has_news = bool(rooms.body or presence or account_data or to_device or device_lists)
    body["next_batch"] = str(next_batch)
    body.update(e2ee_count_fields(start.e2e_counts))
    complete = next_batch == ctx.now
    return SyncResult(
        body,
        has_news,
        next_batch,
        watch,
        complete=complete,
        basis=basis(next_batch, rooms.kept) if complete else None,
    )

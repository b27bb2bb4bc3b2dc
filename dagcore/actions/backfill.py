"""Backfill: a room's earlier history, asked of the servers in the room when a backwards
``/messages`` walk reaches a gap in what we hold.

Spec: https://spec.matrix.org/v1.19/server-server-api/#backfilling-and-retrieving-missing-events
(``GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=``).

After a remote join we hold the room's state and auth chain (outliers) and our join, whose
prev events we do not have: a *backward extremity* (``dagcore.store.backfill``). When a
``/messages`` page walking back meets one, we ask the servers in the room for the events
before it, one server after the other, within :data:`BACKFILL_BUDGET_S` in all — a client's
request never waits longer on other servers, and gets what we hold if they all fail.

Every event of an answer goes the way events from ``/send`` go: receipt checks 1-3
(``received_pdu``, through ``GapFiller.checked``), its missing auth events and, for the
oldest of a batch whose prev events we lack, the state before it (``state_ids``) fetched
from the same server, then ``persist_received_event`` (auth against its auth events and
the state before it). Backfilled events are history, and the pipeline treats them so:

* **Position.** ``/messages`` orders a room by ``(depth, stream_ordering)`` and its tokens
  carry that pair, so a backfilled event falls into place by its depth whatever its
  stream position. The stream position is what ``/sync`` reads: every position handed out
  so far is positive, and a sync token is "everything up to here". A backfilled event
  takes a *negative* position (as in Synapse), further down the further back it is: it is
  below every sync token, so no incremental ``/sync`` reports it as new and no long-poll
  wakes for it, and an initial ``/sync`` (which orders by stream position) still puts it
  before the room's newer events, oldest first.
* **Nobody is told.** No "events persisted" announcement: no /sync wake-up, no push, no
  outbox row (the other servers have it already).
* **Not soft-failed, not current.** It is checked against the state before it, never
  against the room's current state, and never moves the room's head.

What clients see of it is decided as for any event (``room_access.filter_visible_events``:
the history visibility and the reader's membership in the state before each event); what
the peer may give us was decided by its own ``server_visibility``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from dagcore.actions import room_access
from dagcore.actions.fill_gaps import GapFiller, TransientFailure
from dagcore.actions.persist_event import EventRejected, RoomNotFound, persist_received_event
from dagcore.actions.room_access import RoomReader, TimelinePage
from dagcore.clock import now_ms
from dagcore.federation.client import FederationError, encode_path, get_federation_client
from dagcore.models import Room
from dagcore.protocol.events import Event
from dagcore.protocol.room_versions import get_room_version
from dagcore.server_keys import get_server_name
from dagcore.store import backfill as backfill_store
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import timeline
from dagcore.store.backfill import Gap

logger = logging.getLogger("dagma.federation")

#: The most a client's /messages waits on other servers in all (a dead peer costs this, once).
BACKFILL_BUDGET_S = 10.0
#: The most one server's /backfill answer may take, within the budget.
REQUEST_TIMEOUT_S = 5.0
#: Events asked per request (Synapse asks for 100 too; Dagma serves at most 100).
BACKFILL_LIMIT = 100
#: Gaps (``v``) per request: Dagma serves at most 20.
MAX_GAPS = 20
#: Servers asked per round, at most.
MAX_SERVERS = 5
#: Rounds of "backfill, read the page again" per /messages request.
MAX_ROUNDS = 3
#: A gap no server could fill is asked again after this long, doubled at each failure, up to a day.
RETRY_BASE_MS = 60_000
RETRY_MAX_MS = 24 * 3600 * 1000

_room_locks: dict[str, threading.Lock] = {}
_room_locks_guard = threading.Lock()


def _room_lock(room_id: str) -> threading.Lock:
    with _room_locks_guard:
        lock = _room_locks.get(room_id)
        if lock is None:
            if len(_room_locks) > 10_000:
                _room_locks.clear()  # idle locks only cost memory; held ones are referenced by holders
            lock = _room_locks[room_id] = threading.Lock()
        return lock


def access_room_messages_backfilling(
    reader: RoomReader,
    *,
    from_key: timeline.TopoKey | None,
    direction: str,
    limit: int,
    to_key: timeline.TopoKey | None = None,
    event_filter: timeline.EventFilter | None = None,
    contains_url: bool | None = None,
    lazy_load_members: bool = False,
) -> TimelinePage:
    """``/messages`` (``room_access.access_room_messages``), and when a backwards page walked
    past a gap in our history, the gap backfilled from the room's servers and the page read
    again (at most :data:`MAX_ROUNDS` times, within :data:`BACKFILL_BUDGET_S`)."""

    def page() -> TimelinePage:
        return room_access.access_room_messages(
            reader, from_key=from_key, direction=direction, limit=limit, to_key=to_key,
            event_filter=event_filter, contains_url=contains_url, lazy_load_members=lazy_load_members,
        )  # fmt: skip

    found = page()
    if direction != "b" or limit <= 0:
        return found
    deadline = time.monotonic() + BACKFILL_BUDGET_S
    for _ in range(MAX_ROUNDS):
        if found.next_key is not None:
            # The page stopped at ``next_key``: only gaps among the events it walked over
            # matter now (the next page meets the ones further down).
            reached: int | None = found.next_key[0]
        else:
            # The walk ended: every gap below the start (down to ``to``) matters.
            reached = to_key[0] if to_key is not None else None
        added = do_backfill_gaps(
            reader.room,
            max_depth=from_key[0] if from_key is not None else None,
            min_depth=reached,
            deadline=deadline,
        )
        if not added:
            break
        found = page()
    return found


def do_backfill_gaps(room: Room, *, max_depth: int | None, min_depth: int | None, deadline: float) -> int:
    """Backfill the room's gaps met between those depths from the servers in the room;
    returns how many events joined the timeline (or 1 when another request of this process
    filled them meanwhile). Bounded by ``deadline`` (monotonic)."""
    if not backfill_store.get_backward_extremities(
        room, max_depth=max_depth, min_depth=min_depth, now=now_ms(), limit=1
    ):
        return 0
    lock = _room_lock(room.room_id)
    # Another request of this process is backfilling the room: wait for it (its events are ours too).
    if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
        return 0
    try:
        gaps = backfill_store.get_backward_extremities(
            room, max_depth=max_depth, min_depth=min_depth, now=now_ms(), limit=MAX_GAPS
        )
        if not gaps:
            return 1  # filled while we waited: read the page again
        return _backfill(room, gaps, deadline=deadline)
    finally:
        lock.release()


def backfill_servers(room: Room) -> list[str]:
    """The servers to ask, in order: the room ID's server (before v12, the creator's, which
    has the room from its start), then the others with members in the room."""
    ours = get_server_name()
    joined = sorted(room_store.get_joined_servers(room))
    first = room.room_id.split(":", 1)[1] if ":" in room.room_id else None
    ordered = ([first] if first in joined else []) + [s for s in joined if s != first]
    return [s for s in ordered if s != ours][:MAX_SERVERS]


def _backfill(room: Room, gaps: Sequence[Gap], *, deadline: float) -> int:
    version = get_room_version(room.room_version, require_supported=False)
    client = get_federation_client()
    wanted = [g.event_id for g in gaps]
    added = 0
    for server in backfill_servers(room):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            answer = client.get_json(
                server,
                encode_path("/_matrix/federation/v1/backfill/{}", room.room_id),
                query={"v": wanted, "limit": str(BACKFILL_LIMIT)},
                timeout=min(REQUEST_TIMEOUT_S, remaining),
            )
        except FederationError as exc:
            logger.info("backfilling %s from %s failed: %s", room.room_id, server[:255], exc)
            continue
        filler = GapFiller(origin=server, room_id=room.room_id, version=version, deadline=deadline)
        pdus = answer.get("pdus")
        events = filler.checked(pdus[:BACKFILL_LIMIT] if isinstance(pdus, list) else [])
        added += _persist_history(room, filler, events, deadline=deadline)
        if added:
            break
    unfilled = backfill_store.get_gaps(room, wanted)
    if unfilled:
        # Nobody had these for us (down, or the history is not visible to our users): ask again later.
        attempts = max(g.attempts for g in unfilled)
        wait = min(RETRY_BASE_MS * 2 ** min(attempts, 20), RETRY_MAX_MS)
        backfill_store.note_backfill_failure(
            room, [g.event_id for g in unfilled], retry_after_ts=now_ms() + wait
        )
    return added


def _persist_history(room: Room, filler: GapFiller, events: Sequence[Event], *, deadline: float) -> int:
    """Persist a backfilled batch oldest first (each event after its prev events), each at a
    fresh negative position, the oldest lowest; returns how many joined the timeline."""
    unique = {e.event_id: e for e in events if e.room_id == room.room_id}
    held = event_store.get_events_by_ids(list(unique))
    todo = sorted(
        (e for i, e in unique.items() if i not in held or held[i].outlier),
        key=lambda e: (e.depth, e.event_id),
    )
    positions = backfill_store.reserve_backfill_positions(len(todo))
    added = 0
    for event, position in zip(todo, positions, strict=True):
        if time.monotonic() > deadline:
            break
        try:
            filler.ensure_auth_events(event)
            # The oldest events of a batch cite events we do not hold: their state comes
            # from the server (``state_ids``), as for a gap in /send.
            state_before = filler.state_before(event) if filler.unknown_prevs(event) else None
            persisted = persist_received_event(event, state_before=state_before, backfilled_position=position)
        except TransientFailure as exc:
            logger.info("backfilled %s from %s: %s", event.event_id, filler.origin[:255], exc)
            continue
        except (EventRejected, RoomNotFound) as exc:
            logger.info("backfilled %s from %s refused: %s", event.event_id, filler.origin[:255], exc)
            continue
        if persisted.stream_ordering is not None and persisted.rejected_reason is None:
            added += 1
    return added


def do_backfill_from(room: Room, *, server: str, event_ids: Sequence[str], deadline: float) -> int:
    """Ask ``server`` for ``event_ids`` and the history before them (``/backfill``) and persist
    what we lack, every event checked as backfilled events are; returns how many joined the
    timeline. ``dag repair`` fetches events the DAG cites but the store lost with it."""
    version = get_room_version(room.room_version, require_supported=False)
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not event_ids:
        return 0
    try:
        answer = get_federation_client().get_json(
            server,
            encode_path("/_matrix/federation/v1/backfill/{}", room.room_id),
            query={"v": list(event_ids), "limit": str(BACKFILL_LIMIT)},
            timeout=min(REQUEST_TIMEOUT_S, remaining),
        )
    except FederationError as exc:
        logger.info("backfilling %s from %s failed: %s", room.room_id, server[:255], exc)
        return 0
    filler = GapFiller(origin=server, room_id=room.room_id, version=version, deadline=deadline)
    pdus = answer.get("pdus")
    events = filler.checked(pdus[:BACKFILL_LIMIT] if isinstance(pdus, list) else [])
    return _persist_history(room, filler, events, deadline=deadline)

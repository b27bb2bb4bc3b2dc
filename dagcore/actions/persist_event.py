"""The event pipeline: one persistence path for local sends and federation (DESIGN.md §3).

``send_local_event`` is the one way a local event enters a room: it builds the
event on top of the room's forward extremities, checks it and persists it
(``create_room_with_create_event`` starts a room); ``persist_received_event``
takes an event from another server
whose prev/auth events are already known (the Embassy fills gaps first) and
runs the spec's receipt checks before persisting it:

    spec: https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu
      4. auth against the event's own auth_events      -> reject
      5. auth against the state before the event       -> reject
      6. auth against the room's current state          -> soft-fail

Every write happens in one transaction serialised per room (PostgreSQL advisory
lock), so any number of processes can write to one room safely. After commit the
pipeline announces what it persisted on one seam (``dagcore.events_persisted``)
and knows none of its consumers (/sync, push, the federation outbox).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagcore.actions.redaction_rules import (
    check_may_redact,
    do_apply_pending_redactions,
    do_apply_redaction,
    get_pending_redaction,
)
from dagcore.actions.txns import ClientTxn, get_answered_event_id, record_answer
from dagcore.clock import now_ms
from dagcore.events_persisted import EventsPersisted, announce_persisted
from dagcore.http.errors import MatrixError, not_in_room
from dagcore.models import Room
from dagcore.observability.metrics import STATE_RESOLUTION_SECONDS
from dagcore.protocol.auth_rules import (
    AuthError,
    auth_types_for_event,
    check_auth_events_list,
    check_event_auth,
)
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.events import Event, StateKey
from dagcore.protocol.hashing import (
    add_content_hash,
    compute_event_id,
    compute_reference_hash,
    compute_room_id_v12,
    encode_base64,
)
from dagcore.protocol.pdu_validation import MAX_PDU_BYTES
from dagcore.protocol.room_versions import EventFormat, RoomVersion, get_room_version
from dagcore.protocol.signing import sign_event
from dagcore.protocol.state_res import resolve_state
from dagcore.server_keys import get_server_name, get_signing_key
from dagcore.store import backfill as backfill_store
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store import transaction
from dagcore.store.events import Extremity, StoredEvent
from dagcore.store.state_res_store import DatabaseStateResStore, PendingEvent

logger = logging.getLogger(__name__)

CREATE_KEY: StateKey = ("m.room.create", "")
#: Spec PDU limit on prev_events (server-server API, "PDUs"); we cite at most this many.
MAX_PREV_EVENTS = 20
MAX_DEPTH = 2**63 - 1


class RoomNotFound(Exception):
    pass


class EventRejected(Exception):
    """The event fails the auth rules; nothing was stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EventTooLarge(EventRejected):
    """The built PDU is over the spec's size limit; nothing was stored (callers answer 413)."""


@dataclass(frozen=True)
class PersistedEvent:
    event: Event
    nid: int
    stream_ordering: int | None
    rejected_reason: str | None = None
    soft_failed: bool = False


# --------------------------------------------------------------------------- helpers


def _state_entries_for_auth(
    room: Room, state_group: int | None, keys: list[StateKey]
) -> dict[StateKey, tuple[int, Event]]:
    """``key -> (nid, event)`` at ``keys`` (plus the create event) in the given state."""
    wanted = list(dict.fromkeys([CREATE_KEY, *keys]))
    if state_group is None:
        return {}
    if state_group == room.current_state_group:
        return state_store.get_current_state_entries(room, wanted)
    nids = state_store.get_state_ids(state_group, wanted)
    by_nid = event_store.get_events_by_nids(nids.values())
    return {k: (n, by_nid[n].effective_event) for k, n in nids.items() if n in by_nid}


def _state_events_for_auth(
    room: Room, state_group: int | None, keys: list[StateKey]
) -> dict[StateKey, Event]:
    return {k: ev for k, (_, ev) in _state_entries_for_auth(room, state_group, keys).items()}


def _resolve_groups(
    room: Room, room_version: RoomVersion, groups: list[int], *, pending: PendingEvent | None = None
) -> int:
    """The state group of the resolution of ``groups`` (stored if new).

    ``pending``: the event being persisted, whose row is not written yet but which
    may be part of one of the groups (the state after it).
    """
    unique = list(dict.fromkeys(groups))
    if len(unique) == 1:
        return unique[0]
    state_sets_nids = [state_store.get_state_ids(g) for g in unique]
    all_nids = {n for s in state_sets_nids for n in s.values()}
    id_of = event_store.get_event_ids_for_nids(all_nids)
    if pending is not None:
        id_of[pending.nid] = pending.event.event_id
    nid_of = {v: k for k, v in id_of.items()}
    state_sets = [{k: id_of[n] for k, n in s.items()} for s in state_sets_nids]
    with STATE_RESOLUTION_SECONDS.time():
        resolved = resolve_state(room_version, state_sets, DatabaseStateResStore(pending))
    resolved_nids = {k: nid_of[e] for k, e in resolved.items()}
    for g, s in zip(unique, state_sets_nids, strict=True):
        if s == resolved_nids:
            return g
    return state_store.create_state_group_for_state(room, state=resolved_nids, near_group=unique[0])


def _auth_chain_for(event: Event, auth_nids: list[int]) -> list[int]:
    chains = event_store.get_auth_chains(auth_nids)
    chain: set[int] = set(auth_nids)
    for nid in auth_nids:
        chain.update(chains.get(nid, ()))
    return sorted(chain)


# --------------------------------------------------------------------------- local events


def build_local_pdu(
    *,
    room_version: RoomVersion,
    room_id: str | None,
    sender: str,
    event_type: str,
    content: dict[str, Any],
    state_key: str | None,
    prev_event_ids: list[str],
    auth_events: list[Event],
    depth: int,
    origin_server_ts: int | None = None,
    redacts: str | None = None,
) -> Event:
    """Assemble, hash and sign a new PDU (spec: server-server API, "PDUs")."""
    server_name = get_server_name()
    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": sender,
        "content": content,
        "depth": min(depth, MAX_DEPTH),
        "origin_server_ts": origin_server_ts if origin_server_ts is not None else now_ms(),
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    if redacts is not None and not room_version.updated_redaction_rules:
        # Before v11 ``redacts`` is a top-level key; from v11 it lives in content.
        pdu["redacts"] = redacts
    if not room_version.updated_redaction_rules:
        pdu["origin"] = server_name
    if room_version.event_format is EventFormat.V1:
        # v1/v2 reference their prev and auth events as [event_id, hashes] pairs.
        pdu["event_id"] = f"${secrets.token_urlsafe(18)}:{server_name}"
        prev_pdus = event_store.get_events_by_ids(prev_event_ids)
        pdu["prev_events"] = [
            [p, {"sha256": encode_base64(compute_reference_hash(prev_pdus[p].event.pdu, room_version))}]
            for p in prev_event_ids
        ]
        pdu["auth_events"] = [
            [a.event_id, {"sha256": encode_base64(compute_reference_hash(a.pdu, room_version))}]
            for a in auth_events
        ]
    else:
        pdu["prev_events"] = list(prev_event_ids)
        pdu["auth_events"] = [a.event_id for a in auth_events]
    pdu = add_content_hash(pdu)
    pdu = sign_event(pdu, room_version=room_version, server_name=server_name, signing_key=get_signing_key())
    event_id = (
        pdu["event_id"]
        if room_version.event_format is EventFormat.V1
        else compute_event_id(pdu, room_version)
    )
    return Event(pdu, room_version, event_id)


def send_local_event(
    *,
    room_id: str,
    sender: str,
    event_type: str,
    content: dict[str, Any],
    state_key: str | None = None,
    redacts: str | None = None,
    origin_server_ts: int | None = None,
    txn: ClientTxn | None = None,
) -> PersistedEvent:
    """The one way a local event enters an existing room: build it on the room's forward
    extremities, check it, persist it. Every caller (clients' sends, membership, profile
    updates, room creation and upgrades) gets the same checks and the same errors:

    - 403 ``M_FORBIDDEN`` "not a member" for a room we do not have (as for one the
      sender is not in: room IDs cannot be probed);
    - 403 ``M_FORBIDDEN`` with the auth rule's reason when the rules refuse the event;
    - 413 ``M_TOO_LARGE`` when the built PDU is over the spec's size limit;
    - for a redaction, what ``redaction_rules.check_may_redact`` refuses (404 / 403).

    Nothing is stored when it raises. ``txn``: the client transaction that asked for the
    event, recorded in the event's own commit, so a retry (even one racing the first
    attempt) answers the first attempt's event: the caller looks for an answer first, and
    the record's unique key settles a race (the later attempt rolls back and answers).
    """
    try:
        return _persist_local_event(
            room_id=room_id,
            sender=sender,
            event_type=event_type,
            content=content,
            state_key=state_key,
            redacts=redacts,
            origin_server_ts=origin_server_ts,
            txn=txn,
        )
    except _AnsweredMeanwhile:
        assert txn is not None
        answered = get_answered_event_id(txn)
        if answered is None:  # its row was purged in between (the insert saw it committed)
            raise MatrixError(409, "M_UNKNOWN", "This transaction is being answered; retry") from None
        # Spec "Transaction identifiers": the same transaction gets the same answer.
        return _answered_event(answered)
    except RoomNotFound:
        raise not_in_room() from None
    except EventTooLarge as exc:
        raise MatrixError(413, "M_TOO_LARGE", exc.reason) from None
    except EventRejected as exc:
        raise MatrixError(403, "M_FORBIDDEN", exc.reason) from None


def _persist_local_event(
    *,
    room_id: str,
    sender: str,
    event_type: str,
    content: dict[str, Any],
    state_key: str | None,
    redacts: str | None,
    origin_server_ts: int | None,
    txn: ClientTxn | None,
) -> PersistedEvent:
    with transaction.atomic():
        # Reserved before the room's write lock: the ID needs no lock (a rolled-back event
        # leaves a gap, which nothing minds), and the lock is held one round trip less.
        nid = event_store.allocate_event_nid()
        room_store.lock_room_for_writing(room_id)
        room = room_store.get_room_for_update(room_id)
        if room is None:
            raise RoomNotFound(room_id)
        if event_type == "m.room.redaction":
            # Every local redaction, whichever endpoint built it (/redact, /send, even /state):
            # the auth rules alone would let any member's redaction apply to a same-server target.
            target = redacts if redacts is not None else content.get("redacts")
            if isinstance(target, str):
                check_may_redact(user_id=sender, room=room, event_id=target)
        room_version = get_room_version(room.room_version, require_supported=False)
        extremities = event_store.get_forward_extremities(room)
        if not extremities:
            raise RoomNotFound(room_id)
        prevs = extremities[:MAX_PREV_EVENTS]
        state_group_before: int | None
        if len(extremities) > MAX_PREV_EVENTS:
            state_group_before = _resolve_groups(
                room, room_version, [e.state_group for e in prevs if e.state_group]
            )
        else:
            state_group_before = room.current_state_group
        if room_version.updated_redaction_rules and redacts is not None:
            content = {**content, "redacts": redacts}
        auth_keys = auth_types_for_event(
            room_version, event_type=event_type, state_key=state_key, sender=sender, content=content
        )
        entries = _state_entries_for_auth(room, state_group_before, auth_keys)
        state_for_auth = {k: ev for k, (_, ev) in entries.items()}
        auth_events = [state_for_auth[k] for k in auth_keys if k in state_for_auth]
        event = build_local_pdu(
            room_version=room_version,
            room_id=room_id,
            sender=sender,
            event_type=event_type,
            content=content,
            state_key=state_key,
            prev_event_ids=[e.event_id for e in prevs],
            auth_events=auth_events,
            depth=max(e.depth for e in prevs) + 1,
            origin_server_ts=origin_server_ts,
            redacts=redacts,
        )
        canonical_json = encode_canonical_json(event.pdu)
        if len(canonical_json) > MAX_PDU_BYTES:
            # Spec: "The complete event MUST NOT be larger than 65536 bytes". Whatever path
            # built the content (initial_state, profile propagation...), no peer would take it.
            raise EventTooLarge(f"the event would be larger than {MAX_PDU_BYTES} bytes")
        try:
            check_auth_events_list(event, auth_events)
            # The auth events were selected from the state before the event, so this
            # one check is also the "state before" and "current state" check.
            check_event_auth(event, state_for_auth)
        except AuthError as exc:
            raise EventRejected(str(exc)) from None
        if txn is not None and not record_answer(txn, event_id=event.event_id):
            # A concurrent attempt of the same transaction committed first (the insert waited
            # for it): this one's event is rolled back, the first one's is the answer.
            raise _AnsweredMeanwhile
        return _persist(
            room=room,
            event=event,
            state_group_before=state_group_before,
            auth_nids={entries[k][1].event_id: entries[k][0] for k in auth_keys if k in entries},
            extremities=extremities,
            replaced_extremities=prevs,
            rejected_reason=None,
            soft_failed=False,
            becomes_current=True,
            local=True,
            canonical_json=canonical_json,
            nid=nid,
        )


class _AnsweredMeanwhile(Exception):
    """Another attempt of the client transaction committed its event first."""


def _answered_event(event_id: str) -> PersistedEvent:
    stored = event_store.get_event_by_id(event_id)
    if stored is None:  # the answer's event was purged since: the spec lets us forget the transaction
        raise MatrixError(409, "M_UNKNOWN", "This transaction's event no longer exists; use a new ID")
    return _as_persisted(stored)


def _as_persisted(stored: StoredEvent) -> PersistedEvent:
    return PersistedEvent(
        event=stored.event,
        nid=stored.nid,
        stream_ordering=stored.stream_ordering,
        rejected_reason=stored.rejected_reason,
        soft_failed=stored.soft_failed,
    )


def create_room_with_create_event(
    *,
    room_version: RoomVersion,
    sender: str,
    content: dict[str, Any],
    origin_server_ts: int | None = None,
) -> tuple[str, PersistedEvent]:
    """Start a room: its ``m.room.create`` event and the room row, in one transaction.

    The room ID is random before v12 and the create event's reference hash from v12
    (spec: rooms/v12). Raises 403 ``M_FORBIDDEN`` if the auth rules refuse the event.
    """
    server_name = get_server_name()
    room_id = (
        None if room_version.room_id_is_create_event_hash else f"!{secrets.token_urlsafe(18)}:{server_name}"
    )
    event = build_local_pdu(
        room_version=room_version,
        room_id=room_id,
        sender=sender,
        event_type="m.room.create",
        content=content,
        state_key="",
        prev_event_ids=[],
        auth_events=[],
        depth=1,
        origin_server_ts=origin_server_ts,
    )
    if room_id is None:
        room_id = compute_room_id_v12(event.pdu)
    try:
        check_event_auth(event, {})
    except AuthError as exc:
        raise MatrixError(403, "M_FORBIDDEN", str(exc)) from None
    with transaction.atomic():
        room = room_store.insert_room(
            room_id=room_id, room_version=room_version.identifier, creator=sender, created_ts=now_ms()
        )
        room_store.lock_room_for_writing(room_id)
        persisted = _persist(
            room=room,
            event=event,
            state_group_before=None,
            auth_nids={},
            extremities=[],
            replaced_extremities=[],
            rejected_reason=None,
            soft_failed=False,
            becomes_current=True,
            local=True,
        )
    return room_id, persisted


# --------------------------------------------------------------------------- persistence


def _persist(
    *,
    room: Room,
    event: Event,
    state_group_before: int | None,
    auth_nids: Mapping[str, int],
    extremities: Sequence[Extremity],
    replaced_extremities: Sequence[Extremity],
    rejected_reason: str | None,
    soft_failed: bool,
    becomes_current: bool,
    local: bool,
    outlier: bool = False,
    canonical_json: bytes | None = None,
    relayed_for: str | None = None,
    nid: int | None = None,
    backfilled_position: int | None = None,
    pending_redactions: bool = True,
) -> PersistedEvent:
    """Write an event whose checks are done. Must run inside the room's write transaction.

    ``extremities`` are the room's forward extremities before this event;
    ``replaced_extremities`` those among them that the event cites as prev events;
    ``canonical_json`` the PDU's encoding if the caller made it already (local events,
    for the size check); ``nid`` the event's internal ID if the caller reserved it
    (``allocate_event_nid``) before taking the room's lock; ``backfilled_position`` the
    negative stream position of a historical event (``dagcore.actions.backfill``);
    ``pending_redactions=False``: the caller knows no redaction of the event is stored.
    """
    stored_json = (
        canonical_json if canonical_json is not None else encode_canonical_json(event.pdu)
    ).decode()
    is_state = event.is_state() and rejected_reason is None
    auth_chain = _auth_chain_for(event, list(auth_nids.values())) if event.is_state() else None
    if nid is None:
        nid = event_store.allocate_event_nid()
    state_group_after = state_group_before
    if is_state and not outlier:
        state_group_after = state_store.create_state_group(
            room, prev_group=state_group_before, delta={event.state_tuple: nid}
        )

    redacted_by: str | None = None

    def write_row(*, assign_stream_ordering: bool) -> int | None:
        return event_store.insert_event(
            nid=nid,
            room=room,
            event=event,
            received_ts=now_ms(),
            outlier=outlier,
            rejected_reason=rejected_reason,
            soft_failed=soft_failed,
            state_group_before=state_group_before,
            state_group=None if outlier else state_group_after,
            auth_chain=auth_chain,
            canonical_json=stored_json,
            assign_stream_ordering=assign_stream_ordering,
            backfilled_position=backfilled_position if assign_stream_ordering else None,
            redacted_by=redacted_by,
        )

    if outlier or rejected_reason is not None:
        # Never shown to clients and never part of the room's head: no stream position.
        write_row(assign_stream_ordering=False)
        return PersistedEvent(
            event=event,
            nid=nid,
            stream_ordering=None,
            rejected_reason=rejected_reason,
            soft_failed=soft_failed,
        )

    if event.type == "m.room.redaction":
        do_apply_redaction(room=room, redaction=event, state_group_before=state_group_before)
    if not local and pending_redactions:
        # A redaction can arrive over federation before its target: it applies now (spec
        # v1.19 server-server API "Redactions"), written with the row.
        redacted_by = get_pending_redaction(room=room, event=event)

    memberships_changed = False
    if becomes_current and not soft_failed:
        replaced = {e.nid for e in replaced_extremities}
        remaining = [e for e in extremities if e.nid not in replaced]
        new_extremities = [*remaining, Extremity(nid, event.event_id, event.depth, state_group_after)]
        memberships_changed, current_group = _update_current_state(
            room,
            event,
            nid,
            state_group_before,
            state_group_after,
            new_extremities,
            PendingEvent(nid, event, auth_chain or []),
        )
        room_store.set_room_head(
            room,
            forward_extremities=event_store.encode_forward_extremities(new_extremities),
            extremity_count=len(new_extremities),
            current_state_group=current_group,
        )
    # The row last, with its position: the counter row lock orders commits by position.
    stream_ordering = write_row(assign_stream_ordering=True)
    assert stream_ordering is not None
    if not soft_failed and backfilled_position is None:
        # A backfilled event is history, not news: it is announced to nobody (no /sync
        # wake-up, no push, no outbox row: the room's other servers have it already).
        if memberships_changed:
            # Membership rows carry the stream position at which they changed.
            state_store.settle_pending_memberships(room, stream_ordering)
        announce_persisted(
            EventsPersisted.of_event(
                event,
                room_nid=room.pk,
                stream_ordering=stream_ordering,
                local=local,
                relayed_for=relayed_for,
            )
        )
    return PersistedEvent(
        event=event,
        nid=nid,
        stream_ordering=stream_ordering,
        rejected_reason=rejected_reason,
        soft_failed=soft_failed,
    )


def _update_current_state(
    room: Room,
    event: Event,
    nid: int,
    state_group_before: int | None,
    state_group_after: int | None,
    extremities: Sequence[Extremity],
    pending: PendingEvent,
) -> tuple[bool, int | None]:
    """Bring current state up to the (new) forward extremities.

    Returns whether memberships changed and the new current state group (which the
    caller stores with the extremities, in one update of the room row).
    """
    old_group = room.current_state_group
    groups = [e.state_group for e in extremities if e.state_group is not None]
    if not groups:
        return False, old_group
    room_version = get_room_version(room.room_version, require_supported=False)
    new_group = (
        groups[0] if len(set(groups)) == 1 else _resolve_groups(room, room_version, groups, pending=pending)
    )
    if new_group == old_group:
        return False, old_group
    if event.is_state() and new_group == state_group_after and state_group_before == old_group:
        changes: dict[StateKey, int | None] = {event.state_tuple: nid}
    else:
        old = state_store.get_state_ids(old_group) if old_group is not None else {}
        new = state_store.get_state_ids(new_group)
        changes = {k: v for k, v in new.items() if old.get(k) != v}
        changes.update({k: None for k in old if k not in new})
    member_nids = [n for (t, _), n in changes.items() if t == "m.room.member" and n is not None]
    # The new event's own row is written last: take it from memory, the others from the store.
    stored = event_store.get_events_by_nids(n for n in member_nids if n != nid)
    member_events = {n: s.event for n, s in stored.items()}
    if nid in member_nids:
        member_events[nid] = event
    state_store.apply_current_state_delta(
        room,
        changes=changes,
        events=member_events,
        stream_ordering=state_store.PENDING_STREAM_ORDERING,
        server_name=get_server_name(),
    )
    return any(t == "m.room.member" for (t, _) in changes), new_group


# --------------------------------------------------------------------------- remote events


def persist_received_event(
    event: Event,
    *,
    state_before: Mapping[StateKey, str] | None = None,
    outlier: bool = False,
    local: bool = False,
    relayed_for: str | None = None,
    backfilled_position: int | None = None,
    known: Mapping[str, StoredEvent] | None = None,
) -> PersistedEvent:
    """Check and store an event from another server (signatures already verified).

    Its auth events must be stored. Its prev events must be stored too, unless
    ``state_before`` (e.g. from ``/state_ids``) is given. Outliers are stored
    with no state and never shown to clients.

    ``local``: the event is ours although it was built before it could be persisted
    (an invite of another server's user, which that server must sign first): it is
    announced as local, so it goes out to the other servers in the room.

    ``relayed_for``: the server that asked us, as a server in the room, to accept the event
    (``send_join``, ``send_leave``, ``send_knock``): it goes on to the room's other servers,
    which learn of it only from us (spec: server-server API "Joining Rooms").

    ``backfilled_position``: the event is history fetched by ``/backfill``, older than what
    we hold (``dagcore.actions.backfill``): it takes that (negative) stream position, is
    not checked against the current state (a historical event is judged by the state before
    it; Synapse skips the soft-fail check for backfilled events too), never moves the room's
    head and is announced to nobody. An outlier we held (the state and auth chain of a
    join) joins the timeline where backfill finds it.

    An event persisted on a given ``state_before`` whose prev events we do not hold leaves
    a gap, noted as backward extremities (``dagcore.store.backfill``).

    ``known``: stored events the caller has just read (the event's prev and auth events, as
    the Embassy reads them to decide whether a gap must be filled): they are not read again.
    Stored events never change but for redaction, and a redaction committed between that read
    and this transaction is one that could as well have come just after the event.
    """
    with transaction.atomic():
        room_store.lock_room_for_writing(event.room_id)
        found = room_store.get_room_for_receiving(event.room_id, event.event_id)
        if found is None:
            raise RoomNotFound(event.room_id)
        room, probe = found
        existing = event_store.get_event_by_id(event.event_id) if probe.stored else None
        if existing is not None:
            if backfilled_position is not None and existing.outlier and existing.rejected_reason is None:
                return _promote_backfilled_outlier(room, existing, state_before, backfilled_position)
            return _as_persisted(existing)
        room_version = get_room_version(room.room_version, require_supported=False)

        # Step 4: against its own auth events.
        auth_ids = list(event.auth_event_ids)
        if room_version.room_id_is_create_event_hash and event.type != "m.room.create":
            auth_ids.append(event.create_event_id_for_v12())
        stored_auth = _stored_events(auth_ids, known, outliers=True)
        missing = [a for a in auth_ids if a not in stored_auth]
        if missing:
            raise EventRejected(f"unknown auth events: {', '.join(missing[:5])}")
        auth_nids = {a: stored_auth[a].nid for a in event.auth_event_ids if a in stored_auth}
        rejected_reason: str | None = None
        listed = [stored_auth[a].effective_event for a in event.auth_event_ids]
        try:
            check_auth_events_list(event, listed)
            auth_state = {
                s.event.state_tuple: s.effective_event for s in stored_auth.values() if s.event.is_state()
            }
            check_event_auth(event, auth_state)
        except AuthError as exc:
            rejected_reason = f"auth events: {exc}"

        if outlier:
            return _persist(
                room=room,
                event=event,
                state_group_before=None,
                auth_nids=auth_nids,
                extremities=[],
                replaced_extremities=[],
                rejected_reason=rejected_reason,
                soft_failed=False,
                becomes_current=False,
                local=False,
                outlier=True,
                pending_redactions=probe.has_pending_redactions,
            )

        keys = auth_types_for_event(
            room_version,
            event_type=event.type,
            state_key=event.state_key,
            sender=event.sender,
            content=event.content,
        )
        # Step 5: against the state before the event.
        state_group_before = _state_group_before(room, room_version, event, state_before, known=known)
        state_before_auth: dict[StateKey, Event] | None = None
        if rejected_reason is None:
            state_before_auth = _state_events_for_auth(room, state_group_before, keys)
            try:
                check_event_auth(event, state_before_auth)
            except AuthError as exc:
                rejected_reason = f"state before: {exc}"

        # Step 6: against the current state (soft fail: stored, but not part of the room's head).
        soft_failed = False
        if rejected_reason is None and backfilled_position is None:
            current_auth = (
                state_before_auth
                if state_before_auth is not None and state_group_before == room.current_state_group
                else _state_events_for_auth(room, room.current_state_group, keys)
            )
            try:
                check_event_auth(event, current_auth)
            except AuthError as exc:
                soft_failed = True
                logger.info("soft-failing %s: %s", event.event_id, exc)

        # History never moves the room's head: no forward extremity of it is replaced.
        extremities = [] if backfilled_position is not None else event_store.get_forward_extremities(room)
        prev_ids = set(event.prev_event_ids)
        persisted = _persist(
            room=room,
            event=event,
            state_group_before=state_group_before,
            auth_nids=auth_nids,
            extremities=extremities,
            replaced_extremities=[e for e in extremities if e.event_id in prev_ids],
            rejected_reason=rejected_reason,
            soft_failed=soft_failed,
            becomes_current=backfilled_position is None and not probe.has_children,
            local=local,
            relayed_for=relayed_for,
            backfilled_position=backfilled_position,
            pending_redactions=probe.has_pending_redactions,
        )
        _note_gaps(room, event, in_timeline=persisted.stream_ordering is not None and not soft_failed,
                   given_state=state_before is not None, was_gap=probe.is_backward_extremity)  # fmt: skip
        return persisted


def persist_received_outliers(*, room: Room, events: Sequence[Event]) -> dict[str, int]:
    """Store a batch of events from another server as outliers (signatures already verified):
    what :func:`persist_received_event` with ``outlier=True`` does for each, in a few statements.
    Must run inside the room's write transaction. Returns ``event_id -> nid`` of the batch.

    ``events`` come in auth order (each after the events its ``auth_events`` cite). Each is
    checked against its own auth events (spec: "Checks performed on receipt of a PDU", step 4),
    taken from the batch itself or from the store, in memory. The first that fails raises
    ``EventRejected`` (so does an event of the batch we hold as rejected, or one whose auth
    events neither the batch nor the store holds): the caller refuses the whole batch. Events
    already stored are skipped. As on the one-by-one path, an outlier gets no state group and no
    stream position, and neither applies a redaction nor takes a pending one.
    """
    room_version = get_room_version(room.room_version, require_supported=False)

    def auth_ids_of(event: Event) -> list[str]:
        ids = list(event.auth_event_ids)
        if room_version.room_id_is_create_event_hash and event.type != "m.room.create":
            ids.append(event.create_event_id_for_v12())  # v12: the create event is implied
        return ids

    stored = event_store.get_events_by_ids(
        [*(e.event_id for e in events), *(a for e in events for a in auth_ids_of(e))]
    )
    for event in events:
        held = stored.get(event.event_id)
        if held is not None and held.rejected_reason is not None:
            raise EventRejected(f"{event.event_id} is rejected: {held.rejected_reason}")
    new = [e for e in events if e.event_id not in stored]
    # nid -> auth chain, as get_auth_chains reads it (non-state events: none).
    chains = event_store.get_auth_chains(s.nid for s in stored.values() if s.event.is_state())
    known: dict[str, tuple[int, Event]] = {i: (s.nid, s.effective_event) for i, s in stored.items()}
    outliers: list[event_store.NewOutlier] = []
    for event, nid in zip(new, event_store.allocate_event_nids(len(new)), strict=True):
        auth_ids = auth_ids_of(event)
        missing = [a for a in auth_ids if a not in known]
        if missing:
            raise EventRejected(f"unknown auth events: {', '.join(missing[:5])}")
        try:
            check_auth_events_list(event, [known[a][1] for a in event.auth_event_ids])
            check_event_auth(
                event, {known[a][1].state_tuple: known[a][1] for a in auth_ids if known[a][1].is_state()}
            )
        except AuthError as exc:
            raise EventRejected(f"{event.event_id} is rejected: auth events: {exc}") from None
        auth_chain: list[int] | None = None
        if event.is_state():
            auth_nids = {known[a][0] for a in event.auth_event_ids}
            auth_chain = sorted(auth_nids.union(*(chains.get(n, ()) for n in auth_nids)))
            chains[nid] = auth_chain
        known[event.event_id] = (nid, event)
        outliers.append(
            event_store.NewOutlier(nid, event, auth_chain, encode_canonical_json(event.pdu).decode())
        )
    event_store.insert_outliers(room=room, outliers=outliers, received_ts=now_ms())
    return {e.event_id: known[e.event_id][0] for e in events}


def _stored_events(
    event_ids: Sequence[str], known: Mapping[str, StoredEvent] | None, *, outliers: bool
) -> dict[str, StoredEvent]:
    """The stored events among ``event_ids``: from ``known`` where it has them, the rest read
    (one query, none when ``known`` covers them). ``outliers=False``: a known outlier is read
    again (it may have joined the timeline since: backfill)."""
    out = {
        i: known[i]
        for i in event_ids
        if known is not None and i in known and (outliers or not known[i].outlier)
    }
    rest = [i for i in event_ids if i not in out]
    if rest:
        out.update(event_store.get_events_by_ids(rest))
    return out


def _note_gaps(
    room: Room, event: Event, *, in_timeline: bool, given_state: bool, was_gap: bool = True
) -> None:
    """Keep the room's backward extremities true: the event fills its own gap, and an event
    persisted on a given state leaves one for each prev event we do not hold. ``was_gap=False``:
    the caller knows the event is no backward extremity (nothing to remove)."""
    if was_gap:
        backfill_store.remove_backward_extremity(room, event.event_id)
    if in_timeline and given_state and event.prev_event_ids:
        missing = backfill_store.get_missing_timeline_prevs(room, list(event.prev_event_ids))
        backfill_store.add_backward_extremities(room, missing, depth=event.depth)


def _promote_backfilled_outlier(
    room: Room, existing: StoredEvent, state_before: Mapping[StateKey, str] | None, position: int
) -> PersistedEvent:
    """An outlier (from a join's state or an auth chain) that backfill found in the timeline:
    it is checked against the state before it (step 5) and takes its place in the timeline;
    if the state before it refuses it, it stays an outlier (it was accepted as an auth event)."""
    event = existing.event
    room_version = get_room_version(room.room_version, require_supported=False)
    state_group_before = _state_group_before(room, room_version, event, state_before)
    keys = auth_types_for_event(
        room_version, event_type=event.type, state_key=event.state_key, sender=event.sender,
        content=event.content,
    )  # fmt: skip
    try:
        check_event_auth(event, _state_events_for_auth(room, state_group_before, keys))
    except AuthError as exc:
        logger.info("backfilled outlier %s stays an outlier: %s", event.event_id, exc)
        return _as_persisted(existing)
    state_group_after = state_group_before
    if event.is_state():
        state_group_after = state_store.create_state_group(
            room, prev_group=state_group_before, delta={event.state_tuple: existing.nid}
        )
    if event.type == "m.room.redaction":
        do_apply_redaction(room=room, redaction=event, state_group_before=state_group_before)
    do_apply_pending_redactions(room=room, event=event)
    backfill_store.promote_outlier(
        nid=existing.nid, state_group_before=state_group_before, state_group=state_group_after,
        stream_ordering=position,
    )  # fmt: skip
    _note_gaps(room, event, in_timeline=True, given_state=state_before is not None)
    return PersistedEvent(event=event, nid=existing.nid, stream_ordering=position)


def _state_group_before(
    room: Room,
    room_version: RoomVersion,
    event: Event,
    state_before: Mapping[StateKey, str] | None,
    *,
    known: Mapping[str, StoredEvent] | None = None,
) -> int | None:
    if state_before is not None:
        nids = event_store.get_nids_for_event_ids(state_before.values())
        missing = [e for e in state_before.values() if e not in nids]
        if missing:
            raise EventRejected(f"unknown state events: {', '.join(missing[:5])}")
        return state_store.create_state_group_for_state(
            room, state={k: nids[e] for k, e in state_before.items()}, near_group=room.current_state_group
        )
    prevs = _stored_events(event.prev_event_ids, known, outliers=False)
    unknown = [p for p in event.prev_event_ids if p not in prevs or prevs[p].outlier]
    if unknown:
        raise EventRejected(f"unknown prev events (fill the gap first): {', '.join(unknown[:5])}")
    groups = [p.state_group for p in prevs.values() if p.state_group is not None]
    if not groups:
        return None
    return _resolve_groups(room, room_version, groups)

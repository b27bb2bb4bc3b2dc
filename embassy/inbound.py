"""Inbound transactions: ``PUT /_matrix/federation/v1/send/{txnId}``, checked, staged, persisted.

Spec: https://spec.matrix.org/v1.19/server-server-api/#transactions and
#checks-performed-on-receipt-of-a-pdu.

How a transaction is handled (:func:`check_send_transaction`):

1. The envelope is checked at once (``origin`` is the authenticated origin, at most
   50 PDUs and 100 EDUs, no float or out-of-range integer outside the PDUs): else
   400 and nothing is stored.
2. Each PDU gets the cheap checks inline — a room we are in, steps 1-3 of the
   receipt checks (``received_pdu``: format, signatures with the transaction's keys
   fetched together, content hash) — and is dropped with its own ``error`` or staged.
3. The answer and the staged PDUs are written in one commit, keyed by (origin,
   txnId): a retry of the transaction, even one arriving while the first attempt is
   still being processed, gets the recorded answer and stages nothing twice.
4. **Processing** (steps 4-6 and gap filling, :func:`do_process_room`) of a transaction
   of at most :data:`INLINE_MAX_PDUS` PDUs runs inline within :data:`INLINE_BUDGET_S`,
   so the answer usually carries every PDU's verdict (rejected, soft-failed); a bigger
   transaction (a sender catching up) is answered once staged, as Synapse does. What
   is not processed inline stays staged and a worker (``embassy.tasks.process_inbound``, and the beat
   re-scan) finishes it, one worker per room, in arrival order — its verdicts are
   logged, the 200 already given. A slow peer (gap filling) thus never holds the
   sender's request beyond the budget plus one fetch.

Server ACLs (spec "Server Access Control Lists"): a PDU whose origin or sender's
server the room's ``m.room.server_acl`` denies gets an ``error`` and is not staged.

EDUs (:func:`process_edus`) are handled before the transaction is recorded, each on
its own: ``m.typing``, ``m.receipt``, ``m.presence`` (``actions.received_ephemeral``:
only in rooms the origin shares with us and its ACL allows), ``m.direct_to_device``,
``m.device_list_update`` and ``m.signing_key_update`` (each handler is idempotent, so a
transaction resent after a crash before its record is handled again harmlessly). An
EDU about a user of another server than the origin, a malformed one and any other
type are dropped and counted; none ever fails the transaction.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagcore.actions.fill_gaps import GapFiller, TransientFailure, key_lookup
from dagcore.actions.persist_event import EventRejected, RoomNotFound, persist_received_event
from dagcore.actions.received_edus import do_receive_device_list_update, do_receive_signing_key_update
from dagcore.actions.received_ephemeral import do_receive_presence, do_receive_receipt, do_receive_typing
from dagcore.actions.server_acl import AclCache
from dagcore.actions.to_device import do_receive_direct_to_device
from dagcore.clock import now_ms
from dagcore.federation.outbox import room_federates
from dagcore.http.errors import MatrixError
from dagcore.models import Room
from dagcore.protocol.canonical_json import JsonError, check_event_values
from dagcore.protocol.events import Event, InvalidEvent
from dagcore.protocol.identifiers import parse_user_id
from dagcore.protocol.received_pdu import DroppedPdu, check_received_pdu
from dagcore.protocol.room_versions import RoomVersion, get_room_version
from dagcore.store import inbound as inbound_store
from dagcore.store import rooms as room_store
from dagcore.store import transaction
from dagcore.store.events import StoredEvent
from dagcore.store.inbound import StagedPdu
from dagcore.taskqueue.dispatch import enqueue

logger = logging.getLogger("embassy.inbound")

#: Spec: "A transaction can contain up to 50 PDUs and 100 EDUs".
MAX_PDUS = 50
MAX_EDUS = 100
#: Time a /send request spends persisting before it answers and leaves the rest to a worker.
INLINE_BUDGET_S = 10.0
#: A transaction of more PDUs than this (a sender catching up after an outage, a busy
#: room's backlog) is answered once staged, as Synapse does, and its PDUs persisted by the
#: worker: the sender's next transaction need not wait for them. Live traffic (a few PDUs
#: per transaction) is persisted inline and its answer carries each PDU's verdict.
INLINE_MAX_PDUS = 10
#: A worker's hold on a room's staged PDUs (renewed per batch); a dead worker's expires.
ROOM_LEASE_MS = 300_000
#: A staged PDU whose gap cannot be filled (peer unreachable) is given up after this many tries.
MAX_ATTEMPTS = 5
PROCESS_TASK = "embassy.tasks.process_inbound"
#: How long an answered transaction is remembered (its retries are answered from the record).
RECEIVED_TXN_TTL_MS = 24 * 3600 * 1000


# --------------------------------------------------------------------------- the request


def _check_envelope(*, origin: str, body: Any) -> tuple[list[Any], list[Any]]:
    if not isinstance(body, dict):
        raise MatrixError(400, "M_NOT_JSON", "The body must be a JSON object")
    if body.get("origin") != origin:
        raise MatrixError(400, "M_BAD_JSON", "origin does not match the server that signed the request")
    pdus = body.get("pdus", [])
    edus = body.get("edus", [])
    if not isinstance(pdus, list) or not isinstance(edus, list):
        raise MatrixError(400, "M_BAD_JSON", "pdus and edus must be arrays")
    if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
        raise MatrixError(400, "M_BAD_JSON", f"At most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs per transaction")
    if not isinstance(body.get("origin_server_ts"), int):
        raise MatrixError(400, "M_BAD_JSON", "origin_server_ts must be an integer")
    try:
        # PDUs are checked one by one below (v1-v5 events may hold floats); the rest must be canonical.
        check_event_values({k: v for k, v in body.items() if k != "pdus"}, strict=True)
    except JsonError as exc:
        raise MatrixError(400, "M_BAD_JSON", exc.message) from None
    return pdus, edus


def _room_version_of(room_id: object, rooms: dict[str, Room | None]) -> tuple[RoomVersion, Room] | str:
    """The room's version and row, or why a PDU for it is refused. ``rooms``: rows already
    read for this transaction (a room's row is read once, not once per PDU)."""
    if not isinstance(room_id, str):
        return "no room_id"
    if room_id not in rooms:
        rooms[room_id] = room_store.get_room(room_id)
    room = rooms[room_id]
    if room is None:
        return "this server is not in the room"
    if not room_federates.get(room.room_id, room.pk):
        return "the room does not federate (m.federate: false)"
    return get_room_version(room.room_version, require_supported=False), room


def _acl_denies(acl: AclCache, room: Room, origin: str, sender: object) -> str | None:
    """Why the room's server ACL refuses the PDU (spec "Server Access Control Lists": the
    transaction's origin, and the server of the event's sender), or None."""
    if not acl.allows(room, origin):
        return f"{origin[:255]} is denied by the room's server ACL"
    try:
        sender_server = parse_user_id(sender)[1] if isinstance(sender, str) else None
    except ValueError:
        sender_server = None
    if sender_server is not None and not acl.allows(room, sender_server):
        return f"the sender's server {sender_server[:255]} is denied by the room's server ACL"
    return None


def check_send_transaction(*, origin: str, txn_id: str, body: Any) -> dict[str, Any]:
    """Handle one transaction (see the module docstring); the ``/send`` answer."""
    pdus, edus = _check_envelope(origin=origin, body=body)
    recorded = inbound_store.get_transaction_response(origin=origin, txn_id=txn_id)
    if recorded is not None:
        return recorded

    results: dict[str, dict[str, str]] = {}
    acl = AclCache()
    candidates: list[tuple[Mapping[str, Any], RoomVersion]] = []
    rooms: dict[str, Room | None] = {}
    for pdu in pdus:
        if not isinstance(pdu, dict):
            continue  # nothing to name it by: dropped without an entry
        found = _room_version_of(pdu.get("room_id"), rooms)
        if isinstance(found, str):
            results[_claimed_id(pdu)] = {"error": found}
            continue
        denied = _acl_denies(acl, found[1], origin, pdu.get("sender"))
        if denied is not None:
            results[_claimed_id(pdu, found[0])] = {"error": f"forbidden: {denied}"}
            continue
        candidates.append((pdu, found[0]))
    lookup = key_lookup(candidates)
    staged: list[StagedPdu] = []
    seen: set[str] = set()
    for pdu, version in candidates:
        try:
            checked = check_received_pdu(pdu, room_version=version, get_verify_key=lookup)
        except DroppedPdu as exc:
            results[_claimed_id(pdu, version)] = {"error": f"dropped: {exc.reason}"}
            continue
        event = checked.event
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        results[event.event_id] = (
            {"error": "redacted: the content hash does not match"}
            if checked.redacted_for_hash_mismatch
            else {}
        )
        staged.append(StagedPdu(origin=origin, room_id=event.room_id, event_id=event.event_id, pdu=event.pdu))

    if edus:
        counts = process_edus(origin=origin, edus=edus, acl=acl)
        logger.debug("%s: EDUs in transaction %s: %s", origin, txn_id, dict(counts))

    response = {"pdus": results}
    with transaction.atomic():
        inbound_store.lock_transaction_id(origin, txn_id)
        recorded = inbound_store.get_transaction_response(origin=origin, txn_id=txn_id)
        if recorded is not None:
            return recorded  # a concurrent attempt of the same transaction got there first
        inbound_store.record_transaction(
            origin=origin, txn_id=txn_id, now=now_ms(), response=response, staged=staged, edu_count=len(edus)
        )
    staged_rooms = list(dict.fromkeys(s.room_id for s in staged))
    if len(staged) > INLINE_MAX_PDUS:
        for room_id in staged_rooms:
            enqueue(PROCESS_TASK, room_id)
        return response
    deadline = time.monotonic() + INLINE_BUDGET_S
    verdicts: dict[str, str | None] = {}
    for room_id in staged_rooms:
        do_process_room(room_id=room_id, deadline=deadline, verdicts=verdicts)
        if inbound_store.count_staged(room_id):
            enqueue(PROCESS_TASK, room_id)
    for event_id, error in verdicts.items():
        if error is not None and not results.get(event_id):
            results[event_id] = {"error": error}
    inbound_store.update_transaction_response(origin=origin, txn_id=txn_id, response=response)
    return response


def _handle_edu(origin: str, edu_type: str, content: Any, acl: AclCache) -> str:
    if edu_type == "m.typing":
        return do_receive_typing(origin=origin, content=content, acl=acl)
    if edu_type == "m.receipt":
        return do_receive_receipt(origin=origin, content=content, acl=acl)
    if edu_type == "m.presence":
        return do_receive_presence(origin=origin, content=content, acl=acl)
    if edu_type == "m.direct_to_device":
        return "delivered" if do_receive_direct_to_device(origin=origin, content=content) else "dropped"
    if edu_type == "m.device_list_update":
        return do_receive_device_list_update(origin=origin, content=content)
    if edu_type == "m.signing_key_update":
        return do_receive_signing_key_update(origin=origin, content=content)
    return "unhandled"  # an EDU type we do not know (spec: ignored)


def process_edus(*, origin: str, edus: list[Any], acl: AclCache | None = None) -> Counter[str]:
    """Handle a transaction's EDUs one by one; how many ended how (``type:outcome``)."""
    counts: Counter[str] = Counter()
    acl = acl or AclCache()
    for edu in edus:
        if not isinstance(edu, dict) or not isinstance(edu.get("edu_type"), str):
            counts["malformed"] += 1
            continue
        edu_type = edu["edu_type"][:100]
        try:
            outcome = _handle_edu(origin, edu_type, edu.get("content"), acl)
        except Exception:
            # One EDU must not cost the transaction (nor its PDUs) anything.
            logger.exception("%s: handling a %s EDU failed", origin, edu_type)
            outcome = "failed"
        counts[f"{edu_type}:{outcome}"] += 1
    return counts


def _claimed_id(pdu: Mapping[str, Any], version: RoomVersion | None = None) -> str:
    """The ID to report a dropped PDU under: its own (v1/v2), else computed when possible."""
    event_id = pdu.get("event_id")
    if isinstance(event_id, str):
        return event_id[:255]
    if version is not None:
        try:
            return Event(dict(pdu), version).event_id
        except (InvalidEvent, ValueError, TypeError, KeyError):
            pass
    return "$unknown"


# --------------------------------------------------------------------------- processing


def do_process_room(
    *, room_id: str, deadline: float | None = None, verdicts: dict[str, str | None] | None = None
) -> int:
    """Persist the room's staged PDUs in arrival order; returns how many were settled.

    ``deadline`` (monotonic): stop there and leave the rest staged. ``verdicts``: filled
    with ``event_id -> error`` (``None``: accepted).
    """
    owner = f"{os.getpid()}:{secrets.token_hex(4)}"
    settled = 0
    context = RoomContext.load(room_id)
    # Settled rows are deleted together, before the next claim and on the way out: a crash in
    # between processes them again, which finds their events stored and changes nothing.
    finished: list[int] = []
    try:
        while True:
            now = now_ms()
            claimed = inbound_store.claim_room_pdus(
                room_id=room_id, owner=owner, now=now, until=now + ROOM_LEASE_MS
            )
            if not claimed:
                return settled
            for item in claimed:
                if deadline is not None and time.monotonic() > deadline:
                    return settled
                try:
                    error = _process_pdu(item, context)
                except TransientFailure as exc:
                    if item.attempts + 1 >= MAX_ATTEMPTS:
                        logger.warning("giving up on %s from %s: %s", item.event_id, item.origin, exc)
                        finished.append(item.row_id)
                        settled += 1
                        if verdicts is not None:
                            verdicts[item.event_id] = f"not processed: {exc}"
                        continue
                    # Later PDUs of the room wait behind it: their order matters (beat re-scan retries).
                    inbound_store.note_pdu_attempt(item.row_id)
                    logger.info("%s from %s waits: %s", item.event_id, item.origin, exc)
                    return settled
                if error is not None:
                    logger.info("%s from %s: %s", item.event_id, item.origin, error)
                finished.append(item.row_id)
                settled += 1
                if verdicts is not None:
                    verdicts[item.event_id] = error
            inbound_store.finish_pdus(finished)
            finished.clear()
    finally:
        inbound_store.finish_pdus(finished)
        inbound_store.release_room(room_id=room_id, owner=owner)


def do_process_pending() -> list[str]:
    """Beat: queue a worker for each room with staged PDUs nobody holds."""
    rooms = inbound_store.get_rooms_with_staged_pdus(now=now_ms())
    for room_id in rooms:
        enqueue(PROCESS_TASK, room_id)
    return rooms


def do_expire_received_transactions() -> int:
    """Forget transactions answered more than :data:`RECEIVED_TXN_TTL_MS` ago (a sender retries
    the same txnId only until it gets an answer; Synapse keeps them a day too)."""
    return inbound_store.expire_transactions(before_ts=now_ms() - RECEIVED_TXN_TTL_MS)


@dataclass(frozen=True)
class RoomContext:
    """What processing a room's PDUs needs of the room, read once per room and transaction
    (it was read once per PDU): the row (ID, version; its head is read again under the room's
    write lock for each event) and the room version."""

    room: Room
    version: RoomVersion

    @classmethod
    def load(cls, room_id: str) -> RoomContext | None:
        room = room_store.get_room(room_id)
        if room is None:
            return None
        return cls(room, get_room_version(room.room_version, require_supported=False))


def _process_pdu(item: inbound_store.ClaimedPdu, context: RoomContext | None) -> str | None:
    """One staged PDU: gaps filled, then checked and persisted. Its prev and auth events are
    read once (with the event itself, to skip one already stored) and passed along: in the
    usual case (nothing missing) that is the only read before the event's own transaction."""
    if context is None:
        return "this server is not in the room"
    try:
        event = Event(item.pdu, context.version, item.event_id)
    except InvalidEvent as exc:
        return f"dropped: {exc}"
    filler = GapFiller(origin=item.origin, room_id=context.room.room_id, version=context.version)
    read = filler.read_known(event)
    if event.event_id in read:
        return None
    known: dict[str, StoredEvent] | None = read
    state_before: dict[tuple[str, str], str] | None = None
    if filler.unknown_prevs(event, known):
        filler.fetch_missing_events(event)
        known = None  # events were stored since: let each step read what it needs
        if filler.unknown_prevs(event):
            state_before = filler.state_before(event)
    if filler.ensure_auth_events(event, known):
        known = None
    try:
        persisted = persist_received_event(event, state_before=state_before, known=known)
    except (EventRejected, RoomNotFound) as exc:
        return f"rejected: {exc}"
    if persisted.rejected_reason is not None:
        return f"rejected: {persisted.rejected_reason}"
    if persisted.soft_failed:
        return "soft-failed: not allowed by the room's current state"
    return None

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
4. **Processing** (steps 4-6 and gap filling, :func:`do_process_room`) runs inline
   within :data:`INLINE_BUDGET_S`, so the answer usually carries every PDU's
   verdict as Synapse's does (rejected, soft-failed); what the budget does not
   cover stays staged and a worker (``embassy.tasks.process_inbound``, and the beat
   re-scan) finishes it, one worker per room, in arrival order — its verdicts are
   logged, the 200 already given. A slow peer (gap filling) thus never holds the
   sender's request beyond the budget plus one fetch.

EDUs are counted and dropped for now (typing, receipts, presence, device lists and
to-device come with the second Embassy issue); they never fail a transaction.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from dagcore.actions.persist_event import EventRejected, RoomNotFound, persist_received_event
from dagcore.clock import now_ms
from dagcore.federation.client import FederationError, FederationHttpError, encode_path, get_federation_client
from dagcore.federation.keyring import get_keyring, signature_key_requests
from dagcore.federation.outbox import room_federates
from dagcore.http.errors import MatrixError
from dagcore.protocol.canonical_json import JsonError, check_event_values
from dagcore.protocol.events import Event, InvalidEvent
from dagcore.protocol.received_pdu import DroppedPdu, check_received_pdu
from dagcore.protocol.room_versions import RoomVersion, get_room_version
from dagcore.protocol.signing import VerifyKeyLookup
from dagcore.store import events as event_store
from dagcore.store import inbound as inbound_store
from dagcore.store import rooms as room_store
from dagcore.store import transaction
from dagcore.store.inbound import StagedPdu
from dagcore.taskqueue.dispatch import enqueue

logger = logging.getLogger("embassy.inbound")

#: Spec: "A transaction can contain up to 50 PDUs and 100 EDUs".
MAX_PDUS = 50
MAX_EDUS = 100
#: Time a /send request spends persisting before it answers and leaves the rest to a worker.
INLINE_BUDGET_S = 10.0
#: A worker's hold on a room's staged PDUs (renewed per batch); a dead worker's expires.
ROOM_LEASE_MS = 300_000
#: A staged PDU whose gap cannot be filled (peer unreachable) is given up after this many tries.
MAX_ATTEMPTS = 5
#: get_missing_events: events asked for at most (spec default 10).
MISSING_EVENTS_LIMIT = 20
#: Individually fetched state/auth events at most before asking for the whole /state.
MAX_SINGLE_FETCHES = 50
PROCESS_TASK = "embassy.tasks.process_inbound"
#: How long an answered transaction is remembered (its retries are answered from the record).
RECEIVED_TXN_TTL_MS = 24 * 3600 * 1000


class TransientFailure(Exception):
    """Processing needs another server, which did not answer: try the PDU again later."""


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


def _key_lookup(pdus: Iterable[tuple[Mapping[str, Any], RoomVersion]]) -> VerifyKeyLookup:
    """One lookup for every signature of the transaction: its keys are fetched together."""
    return get_keyring().lookup_for(signature_key_requests(pdu for pdu, _ in pdus))


def _room_version_of(room_id: object) -> tuple[RoomVersion, int] | str:
    """The room's version and nid, or why a PDU for it is refused."""
    if not isinstance(room_id, str):
        return "no room_id"
    room = room_store.get_room(room_id)
    if room is None:
        return "this server is not in the room"
    if not room_federates.get(room.room_id, room.pk):
        return "the room does not federate (m.federate: false)"
    return get_room_version(room.room_version, require_supported=False), room.pk


def check_send_transaction(*, origin: str, txn_id: str, body: Any) -> dict[str, Any]:
    """Handle one transaction (see the module docstring); the ``/send`` answer."""
    pdus, edus = _check_envelope(origin=origin, body=body)
    recorded = inbound_store.get_transaction_response(origin=origin, txn_id=txn_id)
    if recorded is not None:
        return recorded

    results: dict[str, dict[str, str]] = {}
    candidates: list[tuple[Mapping[str, Any], RoomVersion]] = []
    for pdu in pdus:
        if not isinstance(pdu, dict):
            continue  # nothing to name it by: dropped without an entry
        found = _room_version_of(pdu.get("room_id"))
        if isinstance(found, str):
            results[_claimed_id(pdu)] = {"error": found}
            continue
        candidates.append((pdu, found[0]))
    lookup = _key_lookup(candidates)
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

    response = {"pdus": results}
    with transaction.atomic():
        inbound_store.lock_transaction_id(origin, txn_id)
        recorded = inbound_store.get_transaction_response(origin=origin, txn_id=txn_id)
        if recorded is not None:
            return recorded  # a concurrent attempt of the same transaction got there first
        inbound_store.record_transaction(
            origin=origin, txn_id=txn_id, now=now_ms(), response=response, staged=staged, edu_count=len(edus)
        )
    if edus:
        logger.debug("%s: %d EDUs in transaction %s (not handled yet)", origin, len(edus), txn_id)

    deadline = time.monotonic() + INLINE_BUDGET_S
    verdicts: dict[str, str | None] = {}
    for room_id in dict.fromkeys(s.room_id for s in staged):
        do_process_room(room_id=room_id, deadline=deadline, verdicts=verdicts)
        if inbound_store.count_staged(room_id):
            enqueue(PROCESS_TASK, room_id)
    for event_id, error in verdicts.items():
        if error is not None and not results.get(event_id):
            results[event_id] = {"error": error}
    inbound_store.update_transaction_response(origin=origin, txn_id=txn_id, response=response)
    return response


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
                    error = _process_pdu(item)
                except TransientFailure as exc:
                    if item.attempts + 1 >= MAX_ATTEMPTS:
                        logger.warning("giving up on %s from %s: %s", item.event_id, item.origin, exc)
                        inbound_store.finish_pdu(item.row_id)
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
                inbound_store.finish_pdu(item.row_id)
                settled += 1
                if verdicts is not None:
                    verdicts[item.event_id] = error
    finally:
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


def _process_pdu(item: inbound_store.ClaimedPdu) -> str | None:
    room = room_store.get_room(item.room_id)
    if room is None:
        return "this server is not in the room"
    version = get_room_version(room.room_version, require_supported=False)
    try:
        event = Event(item.pdu, version, item.event_id)
    except InvalidEvent as exc:
        return f"dropped: {exc}"
    if event_store.get_event_by_id(event.event_id) is not None:
        return None
    filler = _GapFiller(origin=item.origin, room_id=room.room_id, version=version)
    state_before: dict[tuple[str, str], str] | None = None
    if filler.unknown_prevs(event):
        filler.fetch_missing_events(event)
        if filler.unknown_prevs(event):
            state_before = filler.state_before(event)
    filler.ensure_auth_events(event)
    try:
        persisted = persist_received_event(event, state_before=state_before)
    except (EventRejected, RoomNotFound) as exc:
        return f"rejected: {exc}"
    if persisted.rejected_reason is not None:
        return f"rejected: {persisted.rejected_reason}"
    if persisted.soft_failed:
        return "soft-failed: not allowed by the room's current state"
    return None


class _GapFiller:
    """Fetching what an event needs from its origin (DESIGN.md §3 step 3), every answer checked."""

    def __init__(self, *, origin: str, room_id: str, version: RoomVersion) -> None:
        self.origin = origin
        self.room_id = room_id
        self.version = version
        self.client = get_federation_client()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return self.client.request(method, self.origin, path, **kwargs)
        except FederationHttpError as exc:
            error = (exc.body or {}).get("error")
            raise TransientFailure(f"{exc} ({str(error)[:200]})" if error else str(exc)) from None
        except FederationError as exc:
            raise TransientFailure(str(exc)) from None

    def _checked(self, pdus: Iterable[Any]) -> list[Event]:
        items = [p for p in pdus if isinstance(p, dict)]
        lookup = _key_lookup((p, self.version) for p in items)
        events = []
        for pdu in items:
            if pdu.get("room_id", self.room_id) != self.room_id:
                continue
            try:
                events.append(check_received_pdu(pdu, room_version=self.version, get_verify_key=lookup).event)
            except DroppedPdu as exc:
                logger.info("%s sent a PDU we drop: %s", self.origin, exc.reason)
        return events

    def unknown_prevs(self, event: Event) -> list[str]:
        known = event_store.get_events_by_ids(event.prev_event_ids)
        return [p for p in event.prev_event_ids if p not in known or known[p].outlier]

    def fetch_missing_events(self, event: Event) -> None:
        """``get_missing_events`` between our forward extremities and the event, persisted oldest first."""
        room = room_store.get_room(self.room_id)
        if room is None:
            return
        earliest = [e.event_id for e in event_store.get_forward_extremities(room)]
        answer = self._call(
            "POST",
            encode_path("/_matrix/federation/v1/get_missing_events/{}", self.room_id),
            content={
                "earliest_events": earliest,
                "latest_events": [event.event_id],
                "limit": MISSING_EVENTS_LIMIT,
                "min_depth": 0,
            },
        )
        events = sorted(self._checked(answer.get("events", [])), key=lambda e: (e.depth, e.event_id))
        for missing in events:
            if event_store.get_event_by_id(missing.event_id) is not None or self.unknown_prevs(missing):
                continue
            self.ensure_auth_events(missing)
            try:
                persist_received_event(missing)
            except EventRejected as exc:
                logger.info("missing event %s from %s refused: %s", missing.event_id, self.origin, exc)

    def state_before(self, event: Event) -> dict[tuple[str, str], str]:
        """The state before the event, from its origin (``state_ids``), its unknown events stored as outliers."""
        answer = self._call(
            "GET",
            encode_path("/_matrix/federation/v1/state_ids/{}", self.room_id),
            query={"event_id": event.event_id},
        )
        state_ids = [i for i in answer.get("pdu_ids", []) if isinstance(i, str)]
        chain_ids = [i for i in answer.get("auth_chain_ids", []) if isinstance(i, str)]
        wanted = list(dict.fromkeys(state_ids + chain_ids))
        known = event_store.get_events_by_ids(wanted)
        unknown = [i for i in wanted if i not in known]
        fetched: dict[str, Event] = {}
        if len(unknown) > MAX_SINGLE_FETCHES:
            whole = self._call(
                "GET",
                encode_path("/_matrix/federation/v1/state/{}", self.room_id),
                query={"event_id": event.event_id},
            )
            for ev in self._checked([*whole.get("pdus", []), *whole.get("auth_chain", [])]):
                fetched[ev.event_id] = ev
        else:
            for event_id in unknown:
                fetched.update({e.event_id: e for e in self._fetch_event(event_id)})
        self._persist_outliers(fetched.values())
        stored = event_store.get_events_by_ids(state_ids)
        state: dict[tuple[str, str], str] = {}
        for event_id in state_ids:
            found = stored.get(event_id)
            if found is None or not found.event.is_state():
                raise TransientFailure(f"{self.origin} did not give us state event {event_id}")
            state[found.event.state_tuple] = event_id
        return state

    def _fetch_event(self, event_id: str) -> list[Event]:
        answer = self._call("GET", encode_path("/_matrix/federation/v1/event/{}", event_id))
        pdus = [p for p in answer.get("pdus", []) if isinstance(p, dict)][:1]
        lookup = _key_lookup((p, self.version) for p in pdus)
        out = []
        for pdu in pdus:
            try:
                out.append(
                    check_received_pdu(
                        pdu, room_version=self.version, get_verify_key=lookup, expected_event_id=event_id
                    ).event
                )
            except DroppedPdu as exc:
                logger.info("%s answered %s with a PDU we drop: %s", self.origin, event_id, exc.reason)
        return out

    def _required_auth_ids(self, event: Event) -> list[str]:
        ids = list(event.auth_event_ids)
        if self.version.room_id_is_create_event_hash and event.type != "m.room.create":
            ids.append(event.create_event_id_for_v12())
        return ids

    def ensure_auth_events(self, event: Event) -> None:
        """Unknown auth events of the event: its auth chain from ``event_auth``, stored as outliers."""
        ids = self._required_auth_ids(event)
        known = event_store.get_events_by_ids(ids)  # once: every inbound PDU passes here
        if all(i in known for i in ids):
            return
        answer = self._call(
            "GET", encode_path("/_matrix/federation/v1/event_auth/{}/{}", self.room_id, event.event_id)
        )
        self._persist_outliers(self._checked(answer.get("auth_chain", [])))

    def _persist_outliers(self, events: Iterable[Event]) -> None:
        """Store events whose auth events we hold, as outliers, until nothing more can be stored."""
        waiting = {e.event_id: e for e in events}
        waiting = {i: e for i, e in waiting.items() if i not in event_store.get_events_by_ids(list(waiting))}
        while waiting:
            progress = False
            for event_id, ev in sorted(waiting.items(), key=lambda kv: (kv[1].depth, kv[0])):
                needed = self._required_auth_ids(ev)
                known = event_store.get_events_by_ids(needed)
                if any(a not in known for a in needed):
                    continue
                try:
                    persist_received_event(ev, outlier=True)
                except EventRejected as exc:
                    logger.info("outlier %s from %s refused: %s", event_id, self.origin, exc)
                del waiting[event_id]
                progress = True
            if not progress:
                logger.info("%d events from %s lack auth events; not stored", len(waiting), self.origin)
                return

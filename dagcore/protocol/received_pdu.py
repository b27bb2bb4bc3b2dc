"""Steps 1-3 of the checks performed on receipt of a PDU, as one pure function.

Spec: https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu

1. Is a valid event (format, sizes, identifier grammar)  -> else dropped
2. Passes signature checks (every required signer)        -> else dropped
3. Passes hash checks                                     -> else redacted

Steps 4-6 (auth against auth events, state before, current state) need storage
and live in ``dagcore.actions.persist_event``. Every path that brings events in
over federation — ``/send``, ``get_missing_events``, ``backfill``, ``/state``,
``send_join`` responses — must call this function, so an event is only ever
trusted when its *sender's* server signed it (not merely the server relaying it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagcore.protocol.events import Event, InvalidEvent
from dagcore.protocol.hashing import check_content_hash, compute_event_id
from dagcore.protocol.pdu_validation import InvalidPdu, check_pdu_format
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import EventFormat, RoomVersion
from dagcore.protocol.signing import SignatureError, VerifyKeyLookup, verify_event_signatures


class DroppedPdu(Exception):
    """The PDU is dropped (steps 1-2): not stored, not relayed, not an error to the sender's other PDUs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ReceivedPdu:
    event: Event
    #: Step 3 failed: ``event`` is the redacted copy, as the spec requires.
    redacted_for_hash_mismatch: bool


def check_received_pdu(
    pdu: Mapping[str, Any],
    *,
    room_version: RoomVersion,
    get_verify_key: VerifyKeyLookup,
    expected_event_id: str | None = None,
) -> ReceivedPdu:
    """Run steps 1-3 on a PDU from another server; raise :class:`DroppedPdu` for steps 1-2.

    ``expected_event_id``: the ID the PDU was requested by (``/event/{id}``,
    ``get_missing_events`` asks for IDs) — a different event answering is dropped.
    """
    if not isinstance(pdu, Mapping):
        raise DroppedPdu("PDU is not a JSON object")
    try:
        check_pdu_format(pdu, room_version)
    except InvalidPdu as exc:
        raise DroppedPdu(f"invalid format: {exc}") from None
    try:
        verify_event_signatures(pdu, room_version=room_version, get_verify_key=get_verify_key)
    except SignatureError as exc:
        raise DroppedPdu(f"signature check failed: {exc}") from None

    data = dict(pdu)
    data.pop("unsigned", None)  # unsigned data is not covered by hashes or signatures
    if room_version.event_format is EventFormat.V1:
        event_id = str(data["event_id"])
    else:
        event_id = compute_event_id(data, room_version)
    if expected_event_id is not None and event_id != expected_event_id:
        raise DroppedPdu(f"asked for {expected_event_id}, got {event_id}")

    redacted = False
    if not check_content_hash(data):
        # Step 3: the content was altered after signing (or by the origin): keep the
        # redacted form, which is what the signatures actually cover.
        data = redact_pdu(data, room_version)
        redacted = True
    try:
        event = Event(data, room_version, event_id)
    except InvalidEvent as exc:
        raise DroppedPdu(f"invalid event: {exc}") from None
    return ReceivedPdu(event=event, redacted_for_hash_mismatch=redacted)


def edu_sender_matches_origin(user_id: object, origin: str) -> bool:
    """EDUs (typing, receipts, presence, device lists, to-device) speak for users of the origin only.

    Spec: server-server API "EDUs" — a server may only send EDUs about its own users.
    """
    # Localparts cannot contain ":", so the server name (which may carry a port) is what follows the first one.
    return isinstance(user_id, str) and user_id.startswith("@") and user_id.split(":", 1)[-1] == origin

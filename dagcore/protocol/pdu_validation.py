"""Format and size checks on a PDU: step 1 of the checks performed on receipt.

Spec: https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu
("Is a valid event, otherwise it is dropped"), the PDU schemas of each room
version (https://spec.matrix.org/v1.19/rooms/v1/#event-format ... v12), and
https://spec.matrix.org/v1.19/client-server-api/#size-limits.

A PDU that fails here is dropped, not rejected: it never reaches signature
checks, auth rules or storage, so later steps can rely on the shape checked
here (types of the core keys, identifier grammar, bounded sizes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagcore.protocol.canonical_json import JsonError, check_event_values, encode_canonical_json
from dagcore.protocol.identifiers import is_valid_event_id, is_valid_room_id, is_valid_user_id
from dagcore.protocol.room_versions import EventFormat, RoomVersion

__all__ = [
    "MAX_AUTH_EVENTS",
    "MAX_DEPTH",
    "MAX_KEY_BYTES",
    "MAX_PDU_BYTES",
    "MAX_PREV_EVENTS",
    "InvalidPdu",
    "check_pdu_format",
]

#: "The complete event MUST NOT be larger than 65536 bytes, when formatted as a
#: PDU ... including any signatures, and encoded as Canonical JSON."
MAX_PDU_BYTES = 65536
#: sender, room_id, state_key, type and event_id "MUST NOT exceed 255 bytes".
MAX_KEY_BYTES = 255
#: "Must contain less than or equal to 20 events." (prev_events)
MAX_PREV_EVENTS = 20
#: "Must contain less than or equal to 10 events." (auth_events)
MAX_AUTH_EVENTS = 10
#: depth "Must be less than the maximum value for an integer (2^63 - 1)". Room
#: versions 6+ additionally cap it at 2^53 - 1 through canonical JSON.
MAX_DEPTH = 2**63 - 1

# pdu_base + auth_events/prev_events: required in every room version.
_REQUIRED_KEYS = (
    "auth_events",
    "content",
    "depth",
    "hashes",
    "origin_server_ts",
    "prev_events",
    "sender",
    "signatures",
    "type",
)


class InvalidPdu(ValueError):
    """The PDU does not have the format its room version requires; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _utf8_length(value: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidPdu("string is not valid Unicode (lone surrogate)") from None


def _check_short_string(pdu: Mapping[str, Any], key: str) -> None:
    value = pdu[key]
    if not isinstance(value, str):
        raise InvalidPdu(f"{key} must be a string")
    if _utf8_length(value) > MAX_KEY_BYTES:
        raise InvalidPdu(f"{key} is longer than {MAX_KEY_BYTES} bytes")


def _is_v12_create(pdu: Mapping[str, Any], room_version: RoomVersion) -> bool:
    # By type alone, as the v12 PDU schema says ("Omitted from m.room.create
    # events"); a create event without state_key "" is the auth rules' to reject.
    return room_version.room_id_is_create_event_hash and pdu.get("type") == "m.room.create"


def _check_event_refs(pdu: Mapping[str, Any], key: str, limit: int, room_version: RoomVersion) -> None:
    refs = pdu[key]
    if not isinstance(refs, list):
        raise InvalidPdu(f"{key} must be a list")
    if len(refs) > limit:
        raise InvalidPdu(f"too many {key}: {len(refs)} > {limit}")
    for ref in refs:
        if room_version.event_format is EventFormat.V1:
            # v1/v2: [event_id, {"sha256": reference hash}] pairs.
            if not (isinstance(ref, list) and len(ref) == 2 and isinstance(ref[1], Mapping)):
                raise InvalidPdu(f"{key} entries must be [event_id, hashes] pairs")
            ref_id = ref[0]
        else:
            ref_id = ref
        if not is_valid_event_id(ref_id, room_version):
            raise InvalidPdu(f"{key} contains an invalid event ID")


def check_pdu_format(pdu: object, room_version: RoomVersion) -> None:
    """Raise :class:`InvalidPdu` unless ``pdu`` is a well-formed PDU for ``room_version``.

    Checks, in order: it is an object; the keys every format requires (plus
    ``event_id`` in v1/v2, and ``room_id`` except on a v12 create event, whose
    room ID is its own hash); their types; the 255-byte limits; identifier
    grammar of ``sender`` (historical user IDs allowed), ``room_id`` and the
    referenced event IDs for this version; at most 20 ``prev_events`` and 10
    ``auth_events``; ``depth`` an integer in ``0..2**63-1``; the canonical JSON
    value rules in v6+ (no floats, integers within ``±(2**53-1)``); and finally
    the 65,536-byte size of the canonical JSON of the whole PDU (as received,
    signatures and ``unsigned`` included -- the PDU is what is sent).

    A v12 create event that *has* a ``room_id`` is left to auth rule 1.2, which
    rejects it; it is not a format error. Event-type specific content rules are
    the auth rules' business, not this check's.
    """
    if not isinstance(pdu, Mapping):
        raise InvalidPdu("PDU must be a JSON object")

    required = list(_REQUIRED_KEYS)
    if room_version.event_format is EventFormat.V1:
        required.append("event_id")
    if not _is_v12_create(pdu, room_version):
        required.append("room_id")
    missing = [key for key in required if key not in pdu]
    if missing:
        raise InvalidPdu(f"missing required key(s): {', '.join(sorted(missing))}")

    for key in ("sender", "type"):
        _check_short_string(pdu, key)
    if "room_id" in pdu:
        _check_short_string(pdu, "room_id")
    if "state_key" in pdu:
        _check_short_string(pdu, "state_key")
    if "event_id" in pdu:
        _check_short_string(pdu, "event_id")

    if not isinstance(pdu["content"], Mapping):
        raise InvalidPdu("content must be an object")
    hashes = pdu["hashes"]
    if not isinstance(hashes, Mapping) or not isinstance(hashes.get("sha256"), str):
        raise InvalidPdu("hashes must be an object with a sha256 string")
    # Only the outer shape: signatures are not covered by any hash or signature,
    # so a relay could add a malformed entry for some other server; refusing the
    # PDU for it would let any relay make us drop events other servers accept.
    # Entries are checked when signature verification reads them. ``unsigned``
    # is not checked at all for the same reason: it is the sender's annotation,
    # which the pipeline replaces rather than trusts.
    if not isinstance(pdu["signatures"], Mapping):
        raise InvalidPdu("signatures must be an object")
    if not _is_int(pdu["origin_server_ts"]):
        raise InvalidPdu("origin_server_ts must be an integer")
    depth = pdu["depth"]
    if not _is_int(depth) or not 0 <= depth <= MAX_DEPTH:
        raise InvalidPdu(f"depth must be an integer between 0 and {MAX_DEPTH}")

    if not is_valid_user_id(pdu["sender"]):
        raise InvalidPdu("sender is not a valid user ID")
    if "room_id" in pdu and not (
        # A v12 create event's stray room_id is left to the auth rules (see above).
        _is_v12_create(pdu, room_version) or is_valid_room_id(pdu["room_id"], room_version)
    ):
        raise InvalidPdu("room_id is not a valid room ID for this room version")
    if room_version.event_format is EventFormat.V1 and not is_valid_event_id(pdu["event_id"], room_version):
        raise InvalidPdu("event_id is not a valid event ID")
    _check_event_refs(pdu, "prev_events", MAX_PREV_EVENTS, room_version)
    _check_event_refs(pdu, "auth_events", MAX_AUTH_EVENTS, room_version)

    redacts = pdu.get("redacts")
    if redacts is not None and not isinstance(redacts, str):
        raise InvalidPdu("redacts must be a string")

    if room_version.strict_canonicaljson:
        # Room versions 6+: "Servers MUST strictly enforce the JSON format ...
        # discarding of events over federation" (spec rooms/v6 "Canonical JSON").
        # v1-v5 events are not checked: the spec warns they may hold such values
        # and that servers SHOULD handle them.
        try:
            check_event_values(pdu, strict=True)
        except JsonError as exc:
            raise InvalidPdu(exc.message) from None

    try:
        size = len(encode_canonical_json(pdu))
    except (ValueError, TypeError) as exc:
        raise InvalidPdu(f"PDU cannot be encoded as canonical JSON: {exc}") from None
    except RecursionError:
        # JSON encoders (ours and other servers') recurse per nesting level: a PDU
        # nested thousands deep can be neither hashed nor signed, so it is no event.
        raise InvalidPdu("PDU is nested too deeply to be encoded as canonical JSON") from None
    if size > MAX_PDU_BYTES:
        raise InvalidPdu(f"PDU is {size} bytes of canonical JSON, more than {MAX_PDU_BYTES}")

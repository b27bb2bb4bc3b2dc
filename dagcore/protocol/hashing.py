"""Content hashes, reference hashes, event IDs and v12 room IDs.

Spec:
https://spec.matrix.org/v1.19/server-server-api/#calculating-the-content-hash-for-an-event,
https://spec.matrix.org/v1.19/server-server-api/#calculating-the-reference-hash-for-an-event,
event IDs per room version (https://spec.matrix.org/v1.19/rooms/v3/#event-ids,
https://spec.matrix.org/v1.19/rooms/v4/#event-ids) and
https://spec.matrix.org/v1.19/appendices/#room-ids for room version 12.

The *content hash* covers the whole unredacted event and is embedded in it
(``hashes.sha256``), so a receiver can tell a redacted copy from a tampered
one. The *reference hash* covers the redacted event (including that content
hash) and is what event IDs are made of from room version 3 on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion

__all__ = [
    "add_content_hash",
    "check_content_hash",
    "compute_content_hash",
    "compute_event_id",
    "compute_reference_hash",
    "compute_room_id_v12",
    "decode_base64",
    "encode_base64",
]

_UNPADDED_B64 = re.compile(r"[A-Za-z0-9+/]*|[A-Za-z0-9_-]*")


def encode_base64(data: bytes, *, urlsafe: bool = False) -> str:
    """Unpadded Base64 (https://spec.matrix.org/v1.19/appendices/#unpadded-base64),
    or its URL-safe variant (``-`` and ``_`` for ``+`` and ``/``)."""
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.decode("ascii").rstrip("=")


def decode_base64(value: str) -> bytes:
    """Decode standard or URL-safe Base64, with or without padding.

    The spec asks decoders to accept both padded and unpadded input. Unlike
    :func:`base64.b64decode` by default, characters outside the alphabet are an
    error (``ValueError``) rather than silently skipped. Non-zero unused bits in
    the last character are tolerated: the spec's own test-vector seed
    (``...MW+3XA1``) has them.
    """
    if not isinstance(value, str):
        raise ValueError("Base64 value must be a string")
    stripped = value.rstrip("=")
    if len(value) - len(stripped) > 2 or not _UNPADDED_B64.fullmatch(stripped) or len(stripped) % 4 == 1:
        raise ValueError("Invalid Base64")
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
    except binascii.Error as exc:  # pragma: no cover - the regex already checked
        raise ValueError("Invalid Base64") from exc


def _without(pdu: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: value for key, value in pdu.items() if key not in keys}


def compute_content_hash(pdu: Mapping[str, Any]) -> bytes:
    """SHA-256 over the canonical JSON of ``pdu`` minus ``unsigned``, ``signatures`` and ``hashes``.

    ``unsigned`` changes in transit (age), ``signatures`` depend on the hash,
    and an existing ``hashes`` must not hash itself.
    """
    return hashlib.sha256(encode_canonical_json(_without(pdu, ("unsigned", "signatures", "hashes")))).digest()


def add_content_hash(pdu: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``pdu`` whose ``hashes`` is ``{"sha256": <unpadded base64>}``."""
    hashed = dict(pdu)
    hashed["hashes"] = {"sha256": encode_base64(compute_content_hash(pdu))}
    return hashed


def check_content_hash(pdu: Mapping[str, Any]) -> bool:
    """Whether ``hashes.sha256`` matches the PDU's content hash.

    ``False`` also for a missing or malformed hash: per spec, a failed hash check
    means "treat the event as redacted", never "crash".
    """
    hashes = pdu.get("hashes")
    if not isinstance(hashes, Mapping):
        return False
    expected = hashes.get("sha256")
    if not isinstance(expected, str):
        return False
    try:
        expected_bytes = decode_base64(expected)
        actual = compute_content_hash(pdu)
    except ValueError:  # bad base64, or a value canonical JSON cannot encode
        return False
    return expected_bytes == actual


def compute_reference_hash(pdu: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """SHA-256 over the canonical JSON of the redacted PDU minus ``signatures``/``unsigned``.

    Older texts of the spec also remove a top-level ``age_ts``; redaction never
    keeps that key, so dropping it again changes nothing, and we do so only to be
    explicit about the input.
    """
    redacted = redact_pdu(pdu, room_version)
    return hashlib.sha256(
        encode_canonical_json(_without(redacted, ("signatures", "unsigned", "age_ts")))
    ).digest()


def compute_event_id(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """The event ID of ``pdu`` in a room of ``room_version``.

    v3: ``$`` + unpadded standard Base64 of the reference hash (may contain
    ``/`` and ``+``); v4+: URL-safe unpadded Base64. v1/v2 event IDs are chosen
    by the origin server and carried in the PDU, so this raises ``ValueError``.
    """
    if room_version.event_format is EventFormat.V1:
        raise ValueError(
            f"Room version {room_version.identifier} event IDs are assigned by the origin server"
        )
    digest = compute_reference_hash(pdu, room_version)
    return "$" + encode_base64(digest, urlsafe=room_version.event_format is EventFormat.V3)


def compute_room_id_v12(create_pdu: Mapping[str, Any]) -> str:
    """The room ID a v12 ``m.room.create`` event defines: its event ID with a ``!`` sigil.

    Spec: https://spec.matrix.org/v1.19/appendices/#room-ids -- "room IDs are
    simply the event ID of the m.room.create event using ! as the sigil".
    """
    room_version = KNOWN_ROOM_VERSIONS["12"]
    return "!" + compute_event_id(create_pdu, room_version)[1:]

"""Invites by third-party identifier: m.room.member invite with ``third_party_invite``.

Spec: rule "invite 1" of https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules
(the same in every room version). The ``signed`` blob is signed by the identity server
with one of the keys published in the room's ``m.room.third_party_invite`` event
(``public_key``, or each ``public_keys[].public_key``).
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator, Mapping
from typing import Any

import nacl.exceptions
import nacl.signing
from canonicaljson import encode_canonical_json
from unpaddedbase64 import decode_base64

from dagcore.protocol.auth_rules.errors import AuthError
from dagcore.protocol.auth_rules.power import State
from dagcore.protocol.events import Event


def _public_keys(tpi_content: Mapping[str, Any]) -> Iterator[str]:
    single = tpi_content.get("public_key")
    if isinstance(single, str):
        yield single
    many = tpi_content.get("public_keys")
    if isinstance(many, list):
        for entry in many:
            if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
                yield entry["public_key"]


def _decode(value: str) -> bytes | None:
    try:
        return decode_base64(value)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return None


def signed_matches_public_keys(signed: Mapping[str, Any], tpi_content: Mapping[str, Any]) -> bool:
    """Whether any ed25519 signature in ``signed`` verifies with any key of the invite event."""
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return False
    try:
        message = encode_canonical_json(
            {k: v for k, v in signed.items() if k not in ("signatures", "unsigned")}
        )
    except (TypeError, ValueError):
        return False
    keys: list[nacl.signing.VerifyKey] = []
    for encoded in _public_keys(tpi_content):
        raw = _decode(encoded)
        if raw is not None and len(raw) == 32:
            keys.append(nacl.signing.VerifyKey(raw))
    for per_server in signatures.values():
        if not isinstance(per_server, dict):
            continue
        for key_id, encoded_sig in per_server.items():
            if not (
                isinstance(key_id, str) and key_id.startswith("ed25519:") and isinstance(encoded_sig, str)
            ):
                continue
            sig = _decode(encoded_sig)
            if sig is None or len(sig) != 64:
                continue
            for key in keys:
                try:
                    key.verify(message, sig)
                except nacl.exceptions.BadSignatureError:
                    continue
                return True
    return False


def check_third_party_invite(event: Event, state: State, *, target_membership: str) -> None:
    """Allow (return) or reject (raise) an invite carrying ``content.third_party_invite``."""
    if target_membership == "ban":
        raise AuthError("the invited user is banned")
    tpi = event.content.get("third_party_invite")
    signed = tpi.get("signed") if isinstance(tpi, dict) else None
    if not isinstance(signed, dict):
        raise AuthError("third_party_invite has no signed object")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError("third_party_invite.signed lacks mxid or token")
    if mxid != event.state_key:
        raise AuthError("third_party_invite.signed.mxid does not match the state_key")
    invite_event = state.get(("m.room.third_party_invite", token))
    if invite_event is None:
        raise AuthError("no m.room.third_party_invite event matches the token")
    if invite_event.sender != event.sender:
        raise AuthError("the sender did not send the m.room.third_party_invite event")
    if not signed_matches_public_keys(signed, invite_event.content):
        raise AuthError("no signature in third_party_invite.signed matches the invite's public keys")

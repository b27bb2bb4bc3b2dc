"""Ed25519 signing keys, signed JSON and event signatures.

Spec:
https://spec.matrix.org/v1.19/appendices/#signing-json (signing and checking
any JSON object), https://spec.matrix.org/v1.19/server-server-api/#signing-events
(events are signed in their *redacted* form, so a signature survives
redaction), and https://spec.matrix.org/v1.19/rooms/v5/#signing-key-validity-period.

Keys are ``signedjson``/PyNaCl objects carrying ``alg`` and ``version``
attributes (``alg`` is always ``ed25519``); their key ID is ``alg:version``.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import nacl.exceptions
import nacl.signing
from signedjson.key import NACL_ED25519
from signedjson.key import decode_signing_key_base64 as _decode_signing_key
from signedjson.key import get_verify_key as _get_verify_key
from signedjson.sign import sign_json as _signedjson_sign_json
from signedjson.types import SigningKey, VerifyKey

from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.hashing import add_content_hash, decode_base64, encode_base64
from dagcore.protocol.identifiers import parse_user_id
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import EventFormat, RoomVersion

__all__ = [
    "SignatureError",
    "SigningKey",
    "SigningKeyFileError",
    "VerifyKey",
    "VerifyKeyLookup",
    "decode_signing_key_base64",
    "decode_verify_key_base64",
    "encode_verify_key_base64",
    "generate_signing_key",
    "get_verify_key",
    "hash_and_sign_event",
    "key_id",
    "read_signing_keys",
    "required_signers",
    "sign_event",
    "sign_json",
    "verify_event_signatures",
    "verify_json_signature",
    "write_signing_keys",
]

#: ``get_verify_key(server_name, key_id, valid_at_ts) -> VerifyKey | None``.
#:
#: Returns the server's public key for ``key_id``, or ``None`` when it cannot be
#: found (or fetched). ``valid_at_ts`` is the event's ``origin_server_ts`` in
#: room versions that enforce key validity (v5+, ``RoomVersion.enforce_key_validity``):
#: the lookup MUST then only return a key whose ``valid_until_ts`` -- capped at
#: 7 days after it was fetched -- is at least ``valid_at_ts``, and should set
#: ``minimum_valid_until_ts`` when asking a notary (spec rooms/v5 "Signing key
#: validity period"). In v1-v4 it is ``0``: any key the server ever used is fine.
VerifyKeyLookup = Callable[[str, str, int], VerifyKey | None]

# Synapse-compatible key versions: "a_" + 4 random alphanumerics.
_KEY_VERSION_ALPHABET = string.ascii_letters + string.digits
_SEED_BYTES = 32
_PUBLIC_KEY_BYTES = 32


class SignatureError(Exception):
    """A signature is missing or does not verify. ``server_name`` names whose signature failed."""

    def __init__(self, message: str, *, server_name: str | None = None) -> None:
        super().__init__(message)
        self.server_name = server_name


class SigningKeyFileError(ValueError):
    """A signing key file line is not ``ed25519 <version> <base64 seed>``."""


# -- keys -------------------------------------------------------------------------


def generate_signing_key() -> SigningKey:
    """A fresh Ed25519 signing key with a version like ``a_Xy3k`` (key ID ``ed25519:a_Xy3k``)."""
    version = "a_" + "".join(secrets.choice(_KEY_VERSION_ALPHABET) for _ in range(4))
    key: SigningKey = nacl.signing.SigningKey.generate()  # type: ignore[assignment]
    key.version = version
    key.alg = NACL_ED25519
    return key


def key_id(key: SigningKey | VerifyKey) -> str:
    """``"ed25519:a_XXXX"``: the signing key identifier used in ``signatures`` and key APIs."""
    return f"{key.alg}:{key.version}"


def _split_key_id(identifier: str) -> tuple[str, str]:
    algorithm, sep, version = identifier.partition(":") if isinstance(identifier, str) else ("", "", "")
    if not sep or not version:
        raise ValueError(f"Key ID {identifier!r} is not 'algorithm:version'")
    if algorithm != NACL_ED25519:
        raise ValueError(f"Unsupported key algorithm {algorithm!r}")
    return algorithm, version


def decode_signing_key_base64(identifier: str, key_base64: str) -> SigningKey:
    """A signing key from its key ID and the unpadded Base64 of its 32-byte seed."""
    algorithm, version = _split_key_id(identifier)
    seed = decode_base64(key_base64)
    if len(seed) != _SEED_BYTES:
        raise ValueError(f"An {algorithm} seed is {_SEED_BYTES} bytes, got {len(seed)}")
    return _decode_signing_key(algorithm, version, encode_base64(seed))


def get_verify_key(signing_key: SigningKey) -> VerifyKey:
    """The public half of ``signing_key``, with the same ``alg`` and ``version``."""
    return _get_verify_key(signing_key)


def encode_verify_key_base64(key: VerifyKey | SigningKey) -> str:
    """Unpadded Base64 of the 32-byte public key (as in ``verify_keys`` of ``/_matrix/key/v2/server``).

    A signing key is accepted too and its public half is encoded -- never its seed.
    """
    if isinstance(key, nacl.signing.SigningKey):
        return encode_base64(bytes(key.verify_key))
    return encode_base64(key.encode())


def decode_verify_key_base64(identifier: str, key_base64: str) -> VerifyKey:
    """A verify key from a key ID (``ed25519:abc``) and its unpadded Base64; ``ValueError`` if invalid."""
    algorithm, version = _split_key_id(identifier)
    raw = decode_base64(key_base64)
    if len(raw) != _PUBLIC_KEY_BYTES:
        raise ValueError(f"An {algorithm} public key is {_PUBLIC_KEY_BYTES} bytes, got {len(raw)}")
    key: VerifyKey = nacl.signing.VerifyKey(raw)  # type: ignore[assignment]
    key.version = version
    key.alg = algorithm
    return key


def read_signing_keys(text: str) -> list[SigningKey]:
    """Parse a signing key file: one ``ed25519 <version> <unpadded base64 seed>`` per line.

    This is the format Synapse writes (``*.signing.key``), so operators can move
    a server's identity between implementations. Blank lines are ignored; any
    other malformed line raises :class:`SigningKeyFileError` naming its number.
    """
    keys: list[SigningKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3:
            raise SigningKeyFileError(f"line {number}: expected 'ed25519 <version> <base64 seed>'")
        algorithm, version, seed = fields
        try:
            keys.append(decode_signing_key_base64(f"{algorithm}:{version}", seed))
        except ValueError as exc:
            raise SigningKeyFileError(f"line {number}: {exc}") from None
    return keys


def write_signing_keys(keys: Iterable[SigningKey]) -> str:
    """The signing key file text for ``keys`` (inverse of :func:`read_signing_keys`)."""
    return "".join(f"{key.alg} {key.version} {encode_base64(key.encode())}\n" for key in keys)


# -- signed JSON --------------------------------------------------------------------


def sign_json(obj: Mapping[str, Any], *, server_name: str, signing_key: SigningKey) -> dict[str, Any]:
    """Return a copy of ``obj`` signed by ``server_name`` (spec appendices "Signing Details").

    The signature covers the canonical JSON of ``obj`` without ``signatures``
    and ``unsigned``; existing signatures are kept. ``obj`` is not modified
    (signedjson mutates its argument, so it gets a copy whose ``signatures``
    maps are fresh too).
    """
    copy = dict(obj)
    signatures = copy.get("signatures")
    if signatures is not None:
        if not isinstance(signatures, Mapping):
            raise ValueError("signatures must be an object")
        copy["signatures"] = {
            name: dict(entry) if isinstance(entry, Mapping) else entry for name, entry in signatures.items()
        }
        if not isinstance(copy["signatures"].get(server_name, {}), dict):
            raise ValueError(f"signatures.{server_name} must be an object")
    return _signedjson_sign_json(copy, server_name, signing_key)


def verify_json_signature(
    obj: Mapping[str, Any], *, server_name: str, key_id: str, verify_key: VerifyKey
) -> None:
    """Check ``server_name``'s ``key_id`` signature on ``obj``; raise :class:`SignatureError` if not valid.

    Spec: https://spec.matrix.org/v1.19/appendices/#checking-for-a-signature
    (steps 4-7; choosing keys is the caller's business). Any malformed input --
    missing ``signatures``, bad Base64, values canonical JSON cannot encode --
    is a failed check, never another exception.
    """
    signatures = obj.get("signatures")
    entry = signatures.get(server_name) if isinstance(signatures, Mapping) else None
    signature_b64 = entry.get(key_id) if isinstance(entry, Mapping) else None
    if not isinstance(signature_b64, str):
        raise SignatureError(f"No {key_id} signature from {server_name}", server_name=server_name)
    try:
        signature = decode_base64(signature_b64)
        message = encode_canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})
    except ValueError as exc:
        raise SignatureError(
            f"Cannot check {server_name}'s {key_id} signature: {exc}", server_name=server_name
        ) from None
    try:
        verify_key.verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        raise SignatureError(
            f"Invalid {key_id} signature from {server_name}", server_name=server_name
        ) from None


# -- events ---------------------------------------------------------------------------


def sign_event(
    pdu: Mapping[str, Any], *, room_version: RoomVersion, server_name: str, signing_key: SigningKey
) -> dict[str, Any]:
    """Return a copy of ``pdu`` with ``server_name``'s signature added to ``signatures``.

    Spec: https://spec.matrix.org/v1.19/server-server-api/#adding-hashes-and-signatures-to-outgoing-events.
    The signature covers the *redacted* event (minus ``signatures``/``unsigned``),
    so it still verifies after the event is redacted; the content hash in
    ``hashes`` is what ties it to the full content, so add it first
    (:func:`dagcore.protocol.hashing.add_content_hash`, or use
    :func:`hash_and_sign_event`).
    """
    redacted = redact_pdu(pdu, room_version)
    signed_redacted = sign_json(redacted, server_name=server_name, signing_key=signing_key)
    result = dict(pdu)
    result["signatures"] = signed_redacted["signatures"]
    return result


def hash_and_sign_event(
    pdu: Mapping[str, Any], *, room_version: RoomVersion, server_name: str, signing_key: SigningKey
) -> dict[str, Any]:
    """Add the content hash, then sign: the whole of the spec's outgoing-event procedure."""
    return sign_event(
        add_content_hash(pdu), room_version=room_version, server_name=server_name, signing_key=signing_key
    )


def _server_of(user_id: object, what: str) -> str:
    try:
        return parse_user_id(user_id)[1]
    except ValueError:
        raise SignatureError(
            f"{what} is not a valid user ID, so its server's signature cannot be checked"
        ) from None


def required_signers(pdu: Mapping[str, Any], room_version: RoomVersion) -> set[str]:
    """The servers whose signatures ``pdu`` must carry.

    * The ``sender``'s server -- except for an invite created from a third-party
      invite, whose ``sender`` must match the 3pid invite while another server may
      send it (spec "Validating hashes and signatures on received events").
    * v1/v2: the server that created the ``event_id`` (its domain part).
    * v8+ (restricted rooms): for an ``m.room.member`` event whose content has
      ``join_authorised_via_users_server``, that user's server -- auth rule 4.2
      ("If the event is not validly signed by the homeserver of the user ID
      denoted by the key, reject"), which applies whatever the membership. It is
      checked here together with the other signatures so that the auth rules can
      stay free of key lookups.

    Raises :class:`SignatureError` if a required server cannot be determined
    (malformed ``sender``, ``event_id`` or authorising user).
    """
    servers: set[str] = set()
    content = pdu.get("content")
    content = content if isinstance(content, Mapping) else {}
    is_member = pdu.get("type") == "m.room.member"

    is_3pid_invite = is_member and content.get("membership") == "invite" and "third_party_invite" in content
    if not is_3pid_invite:
        servers.add(_server_of(pdu.get("sender"), "sender"))

    if room_version.event_format is EventFormat.V1:
        event_id = pdu.get("event_id")
        _opaque, sep, domain = event_id.partition(":") if isinstance(event_id, str) else ("", "", "")
        if not sep or not domain:
            raise SignatureError("event_id has no server name, so its server's signature cannot be checked")
        servers.add(domain)

    if room_version.restricted_join_rule and is_member and "join_authorised_via_users_server" in content:
        servers.add(
            _server_of(content["join_authorised_via_users_server"], "join_authorised_via_users_server")
        )
    return servers


def verify_event_signatures(
    pdu: Mapping[str, Any], *, room_version: RoomVersion, get_verify_key: VerifyKeyLookup
) -> None:
    """Check every signature ``pdu`` needs (:func:`required_signers`); raise :class:`SignatureError` if not.

    Spec: https://spec.matrix.org/v1.19/server-server-api/#validating-hashes-and-signatures-on-received-events
    and https://spec.matrix.org/v1.19/appendices/#checking-for-a-signature.
    The redacted event is checked, so this passes for a full event and for a
    redacted copy alike. For each required server: signatures with algorithms
    other than ed25519 are ignored; at least one remaining key must be found by
    ``get_verify_key`` and verify; a key that is found but does not verify fails
    the check (a bad signature is evidence of tampering, not a missing key).

    ``get_verify_key`` gets ``origin_server_ts`` as the time the key must be valid
    at when the room version enforces key validity (v5+), else ``0`` -- see
    :data:`VerifyKeyLookup`.
    """
    origin_server_ts = pdu.get("origin_server_ts")
    valid_at = 0
    if room_version.enforce_key_validity:
        if not isinstance(origin_server_ts, int) or isinstance(origin_server_ts, bool):
            raise SignatureError("origin_server_ts is not an integer, so key validity cannot be checked")
        valid_at = origin_server_ts

    redacted = redact_pdu(pdu, room_version)
    signatures = redacted.get("signatures")
    if not isinstance(signatures, Mapping):
        signatures = {}

    for server_name in sorted(required_signers(pdu, room_version)):
        entry = signatures.get(server_name)
        key_ids = sorted(
            kid
            for kid in (entry if isinstance(entry, Mapping) else {})
            if str(kid).startswith(NACL_ED25519 + ":")
        )
        if not key_ids:
            raise SignatureError(f"Event is not signed by {server_name}", server_name=server_name)
        verified = False
        for kid in key_ids:
            verify_key = get_verify_key(server_name, kid, valid_at)
            if verify_key is None:
                continue
            verify_json_signature(redacted, server_name=server_name, key_id=kid, verify_key=verify_key)
            verified = True
        if not verified:
            raise SignatureError(
                f"No usable verify key for {server_name} (tried {', '.join(key_ids)})",
                server_name=server_name,
            )

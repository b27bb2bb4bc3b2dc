"""Signing keys, signed JSON and event signatures.

Spec: https://spec.matrix.org/v1.19/appendices/#signing-json,
https://spec.matrix.org/v1.19/appendices/#cryptographic-test-vectors and
https://spec.matrix.org/v1.19/server-server-api/#signing-events.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from dagcore.protocol.hashing import add_content_hash
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS
from dagcore.protocol.signing import (
    SignatureError,
    SigningKey,
    SigningKeyFileError,
    VerifyKey,
    decode_signing_key_base64,
    decode_verify_key_base64,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    hash_and_sign_event,
    key_id,
    read_signing_keys,
    required_signers,
    sign_event,
    sign_json,
    verify_event_signatures,
    verify_json_signature,
    write_signing_keys,
)

V = KNOWN_ROOM_VERSIONS

SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"


@pytest.fixture
def spec_key() -> SigningKey:
    """The spec's test-vector key: SIGNING_KEY_SEED, KEY_ID "ed25519:1"."""
    return decode_signing_key_base64("ed25519:1", SPEC_SEED)


# -- the spec's JSON signing vectors ------------------------------------------------------


def test_spec_vector_signing_an_empty_object(spec_key: SigningKey) -> None:
    assert sign_json({}, server_name="domain", signing_key=spec_key) == {
        "signatures": {
            "domain": {
                "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
            }
        }
    }


def test_spec_vector_signing_an_object_with_data(spec_key: SigningKey) -> None:
    assert sign_json({"one": 1, "two": "Two"}, server_name="domain", signing_key=spec_key) == {
        "one": 1,
        "signatures": {
            "domain": {
                "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
            }
        },
        "two": "Two",
    }


# -- the spec's event signing vectors -----------------------------------------------------

MINIMAL_EVENT: dict[str, Any] = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}
SIGNED_MINIMAL_EVENT: dict[str, Any] = {
    "auth_events": [],
    "content": {},
    "depth": 3,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "prev_events": [],
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        }
    },
    "type": "X",
    "unsigned": {"age_ts": 1000000},
}
REDACTABLE_EVENT: dict[str, Any] = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {},
    "unsigned": {"age_ts": 1000000},
}
SIGNED_REDACTABLE_EVENT: dict[str, Any] = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"
        }
    },
    "unsigned": {"age_ts": 1000000},
}

# The vectors carry "origin", which v11+ redaction drops: they are v1-v10 events.
PRE_V11 = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]


@pytest.mark.parametrize("version", PRE_V11)
def test_spec_vector_signing_a_minimal_event(spec_key: SigningKey, version: str) -> None:
    signed = hash_and_sign_event(
        MINIMAL_EVENT, room_version=V[version], server_name="domain", signing_key=spec_key
    )
    assert signed == SIGNED_MINIMAL_EVENT


@pytest.mark.parametrize("version", PRE_V11)
def test_spec_vector_signing_an_event_with_redactable_content(spec_key: SigningKey, version: str) -> None:
    signed = hash_and_sign_event(
        REDACTABLE_EVENT, room_version=V[version], server_name="domain", signing_key=spec_key
    )
    assert signed == SIGNED_REDACTABLE_EVENT


def test_signing_is_add_content_hash_then_sign_event(spec_key: SigningKey) -> None:
    signed = sign_event(
        add_content_hash(REDACTABLE_EVENT), room_version=V["1"], server_name="domain", signing_key=spec_key
    )
    assert signed == SIGNED_REDACTABLE_EVENT


def _lookup_for(*keys: tuple[str, SigningKey]) -> Any:
    table = {(server, key_id(key)): get_verify_key(key) for server, key in keys}
    calls: list[tuple[str, str, int]] = []

    def lookup(server_name: str, kid: str, valid_at: int) -> VerifyKey | None:
        calls.append((server_name, kid, valid_at))
        return table.get((server_name, kid))

    lookup.calls = calls  # type: ignore[attr-defined]
    return lookup


@pytest.mark.parametrize(
    ("event", "version"),
    # The minimal event has no event_id, so it can only be a v3+ event; the
    # redactable one carries "$0:domain", the v1/v2 format.
    [(SIGNED_MINIMAL_EVENT, "3"), (SIGNED_MINIMAL_EVENT, "10"), (SIGNED_REDACTABLE_EVENT, "1")],
)
def test_spec_signed_events_verify_in_full_and_redacted(
    spec_key: SigningKey, event: dict[str, Any], version: str
) -> None:
    lookup = _lookup_for(("domain", spec_key))
    verify_event_signatures(event, room_version=V[version], get_verify_key=lookup)
    verify_event_signatures(redact_pdu(event, V[version]), room_version=V[version], get_verify_key=lookup)


# -- keys -----------------------------------------------------------------------------------


def test_generated_keys_have_a_versioned_ed25519_key_id() -> None:
    key = generate_signing_key()
    assert re.fullmatch(r"a_[A-Za-z0-9]{4}", key.version)
    assert key_id(key) == f"ed25519:{key.version}"
    assert generate_signing_key().encode() != key.encode()


def test_spec_seed_gives_the_expected_public_key(spec_key: SigningKey) -> None:
    assert key_id(spec_key) == "ed25519:1"
    public = encode_verify_key_base64(get_verify_key(spec_key))
    assert public == encode_verify_key_base64(spec_key)  # a signing key encodes its public half
    assert len(public) == 43
    decoded = decode_verify_key_base64("ed25519:1", public)
    assert decoded.encode() == get_verify_key(spec_key).encode()
    assert key_id(decoded) == "ed25519:1"


def test_signing_key_file_round_trips_in_synapse_format() -> None:
    keys = [generate_signing_key(), generate_signing_key()]
    text = write_signing_keys(keys)
    lines = text.splitlines()
    assert len(lines) == 2
    assert all(re.fullmatch(r"ed25519 a_[A-Za-z0-9]{4} [A-Za-z0-9+/]{43}", line) for line in lines)
    read = read_signing_keys(text)
    assert [(k.version, k.encode()) for k in read] == [(k.version, k.encode()) for k in keys]


def test_a_synapse_signing_key_file_line_is_read() -> None:
    (key,) = read_signing_keys(f"\ned25519 a_AbCd {SPEC_SEED}\n\n")
    assert key_id(key) == "ed25519:a_AbCd"
    assert key.encode() == decode_signing_key_base64("ed25519:1", SPEC_SEED).encode()


@pytest.mark.parametrize(
    "text",
    [
        "ed25519 a_AbCd",
        f"rsa a_AbCd {SPEC_SEED}",
        "ed25519 a_AbCd not-base64!",
        "ed25519 a_AbCd Zm9v",
        f"x {SPEC_SEED} y z",
    ],
)
def test_malformed_signing_key_files_are_refused(text: str) -> None:
    with pytest.raises(SigningKeyFileError, match="line 1"):
        read_signing_keys(text)


@pytest.mark.parametrize(
    ("identifier", "b64"),
    [
        ("ed25519", "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"),
        ("curve25519:1", "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"),
        ("ed25519:1", "Zm9v"),
        ("ed25519:1", "@@@"),
    ],
)
def test_malformed_verify_keys_are_refused(identifier: str, b64: str) -> None:
    with pytest.raises(ValueError):
        decode_verify_key_base64(identifier, b64)


# -- signed JSON ------------------------------------------------------------------------------


def test_sign_json_does_not_modify_its_input_and_keeps_other_signatures(spec_key: SigningKey) -> None:
    obj = {
        "a": 1,
        "signatures": {"other": {"ed25519:x": "sig"}, "domain": {"ed25519:old": "s"}},
        "unsigned": {"age": 1},
    }
    original = copy.deepcopy(obj)
    signed = sign_json(obj, server_name="domain", signing_key=spec_key)
    assert obj == original
    assert signed["signatures"]["other"] == {"ed25519:x": "sig"}
    assert set(signed["signatures"]["domain"]) == {"ed25519:old", "ed25519:1"}
    assert signed["unsigned"] == {"age": 1}


def test_a_signature_ignores_unsigned_and_other_signatures(spec_key: SigningKey) -> None:
    signed = sign_json({"a": 1}, server_name="domain", signing_key=spec_key)
    signed["unsigned"] = {"age_ts": 5}
    signed["signatures"]["elsewhere"] = {"ed25519:z": "zzz"}
    verify_json_signature(
        signed, server_name="domain", key_id="ed25519:1", verify_key=get_verify_key(spec_key)
    )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.update(a=2),
        lambda o: o.update(extra=True),
        lambda o: o.pop("signatures"),
        lambda o: o.update(signatures={"domain": {"ed25519:1": "not base64!"}}),
        lambda o: o.update(signatures={"domain": {"ed25519:1": 12}}),
        lambda o: o.update(signatures={"domain": "nope"}),
        lambda o: o.update(signatures=[]),
        lambda o: o.update(signatures={"domain": {"ed25519:1": "AAAA"}}),
        lambda o: o.update(a="\ud800"),
    ],
)
def test_a_tampered_or_malformed_signed_object_raises_signature_error(
    spec_key: SigningKey, mutate: Any
) -> None:
    signed = sign_json({"a": 1}, server_name="domain", signing_key=spec_key)
    mutate(signed)
    with pytest.raises(SignatureError) as exc:
        verify_json_signature(
            signed, server_name="domain", key_id="ed25519:1", verify_key=get_verify_key(spec_key)
        )
    assert exc.value.server_name == "domain"


def test_a_signature_by_another_key_does_not_verify(spec_key: SigningKey) -> None:
    signed = sign_json({"a": 1}, server_name="domain", signing_key=spec_key)
    with pytest.raises(SignatureError):
        verify_json_signature(
            signed,
            server_name="domain",
            key_id="ed25519:1",
            verify_key=get_verify_key(generate_signing_key()),
        )


# -- required signers --------------------------------------------------------------------------


def _member(membership: str, **content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.member",
        "state_key": "@joiner:joining.example",
        "sender": "@joiner:joining.example",
        "room_id": "!room:origin.example",
        "content": {"membership": membership, **content},
    }


def test_the_senders_server_must_sign() -> None:
    assert required_signers(_member("join"), V["10"]) == {"joining.example"}


def test_v1_and_v2_events_also_need_the_event_id_servers_signature() -> None:
    event = dict(_member("join"), event_id="$abc:creator.example")
    assert required_signers(event, V["1"]) == {"joining.example", "creator.example"}
    assert required_signers(event, V["2"]) == {"joining.example", "creator.example"}
    assert required_signers(event, V["3"]) == {"joining.example"}


def test_an_invite_from_a_third_party_invite_does_not_need_the_senders_server() -> None:
    event = _member("invite", third_party_invite={"display_name": "x", "signed": {}})
    event["sender"] = "@inviter:inviter.example"
    assert required_signers(event, V["10"]) == set()


@pytest.mark.parametrize("version", ["8", "9", "10", "11", "12"])
def test_a_restricted_join_also_needs_the_authorising_users_server_from_v8(version: str) -> None:
    event = _member("join", join_authorised_via_users_server="@mod:resident.example")
    assert required_signers(event, V[version]) == {"joining.example", "resident.example"}


def test_join_authorised_via_users_server_means_nothing_before_v8() -> None:
    event = _member("join", join_authorised_via_users_server="@mod:resident.example")
    assert required_signers(event, V["7"]) == {"joining.example"}


@pytest.mark.parametrize(
    ("field", "value", "version"),
    [("sender", "not-a-user", "10"), ("sender", None, "10"), ("event_id", "$nodomain", "1")],
)
def test_an_undeterminable_signer_raises_signature_error(field: str, value: Any, version: str) -> None:
    event = dict(_member("join"), event_id="$a:b")
    event[field] = value
    with pytest.raises(SignatureError):
        required_signers(event, V[version])


def test_a_malformed_authorising_user_raises_signature_error() -> None:
    with pytest.raises(SignatureError):
        required_signers(_member("join", join_authorised_via_users_server="mod"), V["9"])


# -- verifying events --------------------------------------------------------------------------


def _v10_event(sender_server: str = "a.example", **extra: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": f"@u:{sender_server}",
        "room_id": "!r:a.example",
        "content": {"body": "hello"},
        "origin_server_ts": 1_700_000_000_000,
        "depth": 5,
        "prev_events": [],
        "auth_events": [],
        **extra,
    }


def test_a_signed_event_verifies_and_the_lookup_gets_origin_server_ts_in_v5_plus() -> None:
    key = generate_signing_key()
    event = hash_and_sign_event(_v10_event(), room_version=V["10"], server_name="a.example", signing_key=key)
    lookup = _lookup_for(("a.example", key))
    verify_event_signatures(event, room_version=V["10"], get_verify_key=lookup)
    assert lookup.calls == [("a.example", key_id(key), 1_700_000_000_000)]


def test_before_v5_the_lookup_is_not_asked_for_key_validity() -> None:
    key = generate_signing_key()
    event = hash_and_sign_event(_v10_event(), room_version=V["4"], server_name="a.example", signing_key=key)
    lookup = _lookup_for(("a.example", key))
    verify_event_signatures(event, room_version=V["4"], get_verify_key=lookup)
    assert lookup.calls == [("a.example", key_id(key), 0)]


def test_changing_redactable_content_keeps_signatures_valid_but_breaks_the_hash() -> None:
    from dagcore.protocol.hashing import check_content_hash

    key = generate_signing_key()
    event = hash_and_sign_event(_v10_event(), room_version=V["10"], server_name="a.example", signing_key=key)
    event["content"] = {"body": "edited by a relay"}
    verify_event_signatures(event, room_version=V["10"], get_verify_key=_lookup_for(("a.example", key)))
    assert not check_content_hash(event)


@pytest.mark.parametrize("field", ["depth", "prev_events", "hashes", "origin_server_ts"])
def test_changing_an_essential_field_fails_the_signature_check_naming_the_server(field: str) -> None:
    key = generate_signing_key()
    event = hash_and_sign_event(_v10_event(), room_version=V["10"], server_name="a.example", signing_key=key)
    if field == "depth":
        event["depth"] = 6
    elif field == "prev_events":
        event["prev_events"] = ["$" + "A" * 43]
    elif field == "hashes":
        event["hashes"] = {"sha256": "A" * 43}
    else:
        event["origin_server_ts"] += 1
    with pytest.raises(SignatureError) as exc:
        verify_event_signatures(event, room_version=V["10"], get_verify_key=_lookup_for(("a.example", key)))
    assert exc.value.server_name == "a.example"


def test_an_unsigned_event_fails_naming_the_missing_server() -> None:
    event = add_content_hash(_v10_event())
    with pytest.raises(SignatureError, match=r"a\.example") as exc:
        verify_event_signatures(event, room_version=V["10"], get_verify_key=_lookup_for())
    assert exc.value.server_name == "a.example"


def test_a_signature_whose_key_cannot_be_found_fails() -> None:
    key = generate_signing_key()
    event = hash_and_sign_event(_v10_event(), room_version=V["10"], server_name="a.example", signing_key=key)
    with pytest.raises(SignatureError) as exc:
        verify_event_signatures(event, room_version=V["10"], get_verify_key=_lookup_for())
    assert exc.value.server_name == "a.example"


def test_unknown_algorithms_are_ignored_but_one_known_key_suffices() -> None:
    key = generate_signing_key()
    event = hash_and_sign_event(_v10_event(), room_version=V["10"], server_name="a.example", signing_key=key)
    event["signatures"]["a.example"]["rsa:1"] = "whatever"
    event["signatures"]["a.example"]["ed25519:gone"] = "AAAA"  # key not found: skipped
    verify_event_signatures(event, room_version=V["10"], get_verify_key=_lookup_for(("a.example", key)))


def test_a_restricted_join_without_the_authorising_servers_signature_fails_naming_it() -> None:
    joiner = generate_signing_key()
    event = _v10_event(
        "joining.example",
        type="m.room.member",
        state_key="@u:joining.example",
        content={"membership": "join", "join_authorised_via_users_server": "@mod:resident.example"},
    )
    event = hash_and_sign_event(
        event, room_version=V["10"], server_name="joining.example", signing_key=joiner
    )
    lookup = _lookup_for(("joining.example", joiner))
    with pytest.raises(SignatureError) as exc:
        verify_event_signatures(event, room_version=V["10"], get_verify_key=lookup)
    assert exc.value.server_name == "resident.example"

    resident = generate_signing_key()
    countersigned = sign_event(
        event, room_version=V["10"], server_name="resident.example", signing_key=resident
    )
    lookup = _lookup_for(("joining.example", joiner), ("resident.example", resident))
    verify_event_signatures(countersigned, room_version=V["10"], get_verify_key=lookup)
    # Redaction keeps join_authorised_via_users_server from v9, so the redacted
    # join still demands (and carries) the resident's signature.
    verify_event_signatures(redact_pdu(countersigned, V["10"]), room_version=V["10"], get_verify_key=lookup)


def test_a_v12_create_event_without_room_id_signs_and_verifies() -> None:
    key = generate_signing_key()
    create = {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@alice:a.example",
        "content": {"room_version": "12"},
        "origin_server_ts": 1,
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
    }
    signed = hash_and_sign_event(create, room_version=V["12"], server_name="a.example", signing_key=key)
    verify_event_signatures(signed, room_version=V["12"], get_verify_key=_lookup_for(("a.example", key)))


def test_a_non_integer_origin_server_ts_fails_in_versions_enforcing_key_validity() -> None:
    key = generate_signing_key()
    event = hash_and_sign_event(_v10_event(), room_version=V["10"], server_name="a.example", signing_key=key)
    event["origin_server_ts"] = "soon"
    with pytest.raises(SignatureError):
        verify_event_signatures(event, room_version=V["10"], get_verify_key=_lookup_for(("a.example", key)))

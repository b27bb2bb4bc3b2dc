"""PDU format and size checks (step 1 of the checks performed on receipt).

Spec: https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu,
the per-version PDU schemas, and https://spec.matrix.org/v1.19/client-server-api/#size-limits.
"""

from __future__ import annotations

from typing import Any

import pytest

from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.hashing import compute_room_id_v12
from dagcore.protocol.pdu_validation import MAX_PDU_BYTES, InvalidPdu, check_pdu_format
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from dagcore.protocol.signing import generate_signing_key, hash_and_sign_event

V = KNOWN_ROOM_VERSIONS
EVENT_ID_V4 = "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"
EVENT_ID_V3 = "$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk"
KEY = generate_signing_key()


def _pdu(version: str, **overrides: Any) -> dict[str, Any]:
    """A valid, signed message PDU for ``version``."""
    room_version = V[version]
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "sender": "@alice:example.org",
        "room_id": "!" + EVENT_ID_V4[1:]
        if room_version.room_id_is_create_event_hash
        else "!room:example.org",
        "content": {"body": "hello", "msgtype": "m.text"},
        "origin_server_ts": 1_700_000_000_000,
        "depth": 12,
        "unsigned": {"age": 4612},
    }
    if version in ("1", "2"):
        pdu["event_id"] = "$abc123:example.org"
        pdu["prev_events"] = [
            ["$prev:example.org", {"sha256": "abase64encodedsha256hashshouldbe43byteslong"}]
        ]
        pdu["auth_events"] = [
            ["$auth:example.org", {"sha256": "abase64encodedsha256hashshouldbe43byteslong"}]
        ]
    elif version == "3":
        pdu["prev_events"] = [EVENT_ID_V3]
        pdu["auth_events"] = [EVENT_ID_V3]
    else:
        pdu["prev_events"] = [EVENT_ID_V4]
        pdu["auth_events"] = [EVENT_ID_V4]
    pdu.update(overrides)
    return hash_and_sign_event(pdu, room_version=room_version, server_name="example.org", signing_key=KEY)


def _reason(pdu: Any, room_version: RoomVersion) -> str:
    with pytest.raises(InvalidPdu) as exc:
        check_pdu_format(pdu, room_version)
    return exc.value.reason


@pytest.mark.parametrize("version", [str(n) for n in range(1, 13)])
def test_a_well_formed_pdu_passes_in_every_room_version(version: str) -> None:
    check_pdu_format(_pdu(version), V[version])


def test_a_v12_create_event_needs_no_room_id() -> None:
    create = hash_and_sign_event(
        {
            "type": "m.room.create",
            "state_key": "",
            "sender": "@alice:example.org",
            "content": {"room_version": "12"},
            "origin_server_ts": 1,
            "depth": 1,
            "prev_events": [],
            "auth_events": [],
        },
        room_version=V["12"],
        server_name="example.org",
        signing_key=KEY,
    )
    check_pdu_format(create, V["12"])
    assert "room_id" in _reason({k: v for k, v in create.items()}, V["11"])
    # A stray room_id on a v12 create event is auth rule 1.2's to reject, not a format error.
    check_pdu_format(dict(create, room_id=compute_room_id_v12(create)), V["12"])


def test_a_non_create_v12_event_needs_a_hash_room_id() -> None:
    assert "room_id" in _reason(_pdu("12", room_id="!room:example.org"), V["12"])
    pdu = _pdu("12")
    del pdu["room_id"]
    assert "missing" in _reason(pdu, V["12"])


@pytest.mark.parametrize(
    "key",
    [
        "auth_events",
        "content",
        "depth",
        "hashes",
        "origin_server_ts",
        "prev_events",
        "room_id",
        "sender",
        "signatures",
        "type",
    ],
)
def test_a_pdu_missing_a_required_key_is_invalid(key: str) -> None:
    pdu = _pdu("10")
    del pdu[key]
    assert key in _reason(pdu, V["10"])


def test_v1_and_v2_pdus_must_carry_their_event_id() -> None:
    pdu = _pdu("1")
    del pdu["event_id"]
    assert "event_id" in _reason(pdu, V["1"])
    assert "event_id" in _reason(_pdu("2", event_id="$no-domain"), V["2"])


def test_a_pdu_must_be_an_object() -> None:
    assert _reason([1, 2], V["10"]) == "PDU must be a JSON object"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"sender": 5}, "sender"),
        ({"sender": "alice"}, "sender"),
        ({"type": None}, "type"),
        ({"state_key": 3}, "state_key"),
        ({"content": []}, "content"),
        ({"origin_server_ts": "1"}, "origin_server_ts"),
        ({"origin_server_ts": True}, "origin_server_ts"),
        ({"depth": -1}, "depth"),
        ({"depth": 1.0}, "depth"),
        ({"depth": True}, "depth"),
        ({"room_id": "room"}, "room_id"),
        ({"prev_events": "$x"}, "prev_events"),
        ({"prev_events": ["$abc:example.org"]}, "prev_events"),
        ({"auth_events": [EVENT_ID_V3]}, "auth_events"),
        ({"redacts": 5}, "redacts"),
    ],
)
def test_wrong_types_and_identifiers_are_invalid(overrides: dict[str, Any], fragment: str) -> None:
    assert fragment in _reason(_pdu("10", **overrides), V["10"])


@pytest.mark.parametrize("hashes", [{}, {"sha256": 5}, "h"])
def test_hashes_must_hold_a_sha256_string(hashes: Any) -> None:
    pdu = _pdu("10")
    pdu["hashes"] = hashes
    assert "hashes" in _reason(pdu, V["10"])


@pytest.mark.parametrize("signatures", [[], "sig", None])
def test_signatures_must_be_an_object(signatures: Any) -> None:
    pdu = _pdu("10")
    pdu["signatures"] = signatures
    assert "signatures" in _reason(pdu, V["10"])


def test_malformed_signature_entries_or_unsigned_added_by_a_relay_do_not_make_the_pdu_invalid() -> None:
    pdu = _pdu("10")
    pdu["signatures"]["relay.example"] = "garbage"
    pdu["unsigned"] = "not an object"
    check_pdu_format(pdu, V["10"])


def test_v1_prev_events_must_be_event_id_and_hash_pairs() -> None:
    assert "pairs" in _reason(_pdu("1", prev_events=["$prev:example.org"]), V["1"])
    assert "pairs" in _reason(_pdu("1", auth_events=[["$a:example.org"]]), V["1"])


def test_v3_references_use_standard_base64_event_ids() -> None:
    assert "prev_events" in _reason(_pdu("3", prev_events=[EVENT_ID_V4]), V["3"])


def test_more_than_20_prev_events_or_10_auth_events_is_invalid() -> None:
    check_pdu_format(_pdu("10", prev_events=[EVENT_ID_V4] * 20, auth_events=[EVENT_ID_V4] * 10), V["10"])
    assert "prev_events" in _reason(_pdu("10", prev_events=[EVENT_ID_V4] * 21), V["10"])
    assert "auth_events" in _reason(_pdu("10", auth_events=[EVENT_ID_V4] * 11), V["10"])


@pytest.mark.parametrize("key", ["type", "state_key"])
def test_type_and_state_key_are_limited_to_255_bytes(key: str) -> None:
    check_pdu_format(_pdu("10", **{key: "é" * 127}), V["10"])  # 254 bytes
    assert key in _reason(_pdu("10", **{key: "é" * 128}), V["10"])  # 256 bytes


def test_sender_room_id_and_event_id_are_limited_to_255_bytes() -> None:
    long_server = "a" * 250 + ".org"
    assert "sender" in _reason(_pdu("10", sender="@u:" + long_server), V["10"])
    assert "room_id" in _reason(_pdu("10", room_id="!r:" + long_server), V["10"])
    assert "event_id" in _reason(_pdu("1", event_id="$e:" + long_server), V["1"])


def _pad_to(version: str, target: int) -> dict[str, Any]:
    pdu = _pdu(version, content={"body": ""})
    size = len(encode_canonical_json(pdu))
    # Rebuild with a body that makes the signed PDU exactly ``target`` bytes.
    pdu = _pdu(version, content={"body": "x" * (target - size)})
    assert len(encode_canonical_json(pdu)) == target
    return pdu


def test_a_pdu_of_exactly_65536_bytes_is_valid_and_one_byte_more_is_not() -> None:
    check_pdu_format(_pad_to("10", MAX_PDU_BYTES), V["10"])
    assert "65536" in _reason(_pad_to("10", MAX_PDU_BYTES + 1), V["10"])


def test_depth_may_reach_2_63_minus_1_before_v6_but_only_2_53_minus_1_from_v6() -> None:
    check_pdu_format(_pdu("5", depth=2**63 - 1), V["5"])
    assert "depth" in _reason(_pdu("5", depth=2**63), V["5"])
    check_pdu_format(_pdu("6", depth=2**53 - 1), V["6"])
    assert "range" in _reason(_pdu("6", depth=2**53), V["6"])


@pytest.mark.parametrize("version", ["6", "10", "11", "12"])
def test_a_float_in_v6_plus_event_content_is_refused(version: str) -> None:
    assert "Float" in _reason(_pdu(version, content={"body": "x", "n": 1.5}), V[version])


@pytest.mark.parametrize("version", ["1", "3", "5"])
def test_floats_and_big_integers_in_v1_to_v5_content_are_tolerated(version: str) -> None:
    check_pdu_format(_pdu(version, content={"n": 1.5, "big": 2**60}), V[version])


def test_a_value_canonical_json_cannot_encode_is_invalid_in_any_version() -> None:
    pdu = _pdu("3")
    pdu["content"] = {"body": "\ud800"}
    assert "canonical JSON" in _reason(pdu, V["3"])


def test_historical_sender_localparts_are_accepted() -> None:
    check_pdu_format(_pdu("10", sender="@Old User:example.org"), V["10"])

"""Receipt checks 1-3 that the Embassy relies on: format, the sender's server's signature, hashes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dagcore.protocol import signing
from dagcore.protocol.hashing import add_content_hash, compute_event_id
from dagcore.protocol.received_pdu import DroppedPdu, check_received_pdu, edu_sender_matches_origin
from dagcore.protocol.room_versions import get_room_version

V11 = get_room_version("11")
ORIGIN_KEY = signing.generate_signing_key()
RELAY_KEY = signing.generate_signing_key()
KEYS = {"origin.test": ORIGIN_KEY, "relay.test": RELAY_KEY}


def lookup(server: str, key_id: str, ts: int) -> Any:
    key = KEYS.get(server)
    return signing.get_verify_key(key) if key is not None and signing.key_id(key) == key_id else None


def make_pdu(
    *, sender: str = "@alice:origin.test", signer: str = "origin.test", **overrides: Any
) -> dict[str, Any]:
    pdu: dict[str, Any] = {
        "room_id": "!room:origin.test",
        "sender": sender,
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "hello"},
        "depth": 5,
        "origin_server_ts": 1_700_000_000_000,
        "prev_events": ["$" + "a" * 43],
        "auth_events": ["$" + "b" * 43],
    }
    pdu.update(overrides)
    pdu = add_content_hash(pdu)
    return signing.sign_event(pdu, room_version=V11, server_name=signer, signing_key=KEYS[signer])


def test_an_event_signed_by_its_senders_server_is_accepted() -> None:
    pdu = make_pdu()
    result = check_received_pdu(pdu, room_version=V11, get_verify_key=lookup)
    assert result.event.event_id == compute_event_id(pdu, V11)
    assert not result.redacted_for_hash_mismatch


def test_an_event_signed_only_by_the_relaying_server_is_dropped() -> None:
    # relay.test claims an event by @alice:origin.test but only relay.test signed it.
    forged = make_pdu(signer="relay.test")
    with pytest.raises(DroppedPdu, match=r"origin\.test"):
        check_received_pdu(forged, room_version=V11, get_verify_key=lookup)


def test_altered_content_keeps_only_the_redacted_copy() -> None:
    pdu = make_pdu()
    tampered = copy.deepcopy(pdu)
    tampered["content"]["body"] = "send me your password"
    result = check_received_pdu(tampered, room_version=V11, get_verify_key=lookup)
    assert result.redacted_for_hash_mismatch
    assert result.event.content == {}
    # the untouched original is kept whole
    assert check_received_pdu(pdu, room_version=V11, get_verify_key=lookup).event.content["body"] == "hello"


def test_an_oversized_pdu_is_dropped() -> None:
    with pytest.raises(DroppedPdu, match="65536"):
        check_received_pdu(
            make_pdu(content={"body": "x" * 70_000, "msgtype": "m.text"}),
            room_version=V11,
            get_verify_key=lookup,
        )
    check_received_pdu(
        make_pdu(content={"body": "x" * 60_000, "msgtype": "m.text"}), room_version=V11, get_verify_key=lookup
    )


def test_too_many_prev_or_auth_events_are_dropped() -> None:
    many = ["$" + f"{i:043d}" for i in range(21)]
    with pytest.raises(DroppedPdu, match="prev_events"):
        check_received_pdu(make_pdu(prev_events=many), room_version=V11, get_verify_key=lookup)
    with pytest.raises(DroppedPdu, match="auth_events"):
        check_received_pdu(make_pdu(auth_events=many[:11]), room_version=V11, get_verify_key=lookup)
    check_received_pdu(
        make_pdu(prev_events=many[:20], auth_events=many[:10]), room_version=V11, get_verify_key=lookup
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"depth": 2**63},
        {"depth": -1},
        {"content": {"msgtype": "m.text", "body": "x", "n": 2**53}},
        {"content": {"msgtype": "m.text", "body": "x", "f": 1.5}},
        {"origin_server_ts": -(2**60)},
    ],
)
def test_out_of_range_numbers_are_dropped(overrides: dict[str, Any]) -> None:
    with pytest.raises(DroppedPdu):
        check_received_pdu(make_pdu(**overrides), room_version=V11, get_verify_key=lookup)


def test_an_answer_for_a_different_event_id_is_dropped() -> None:
    pdu = make_pdu()
    with pytest.raises(DroppedPdu, match="asked for"):
        check_received_pdu(pdu, room_version=V11, get_verify_key=lookup, expected_event_id="$" + "c" * 43)
    check_received_pdu(
        pdu, room_version=V11, get_verify_key=lookup, expected_event_id=compute_event_id(pdu, V11)
    )


def test_unsigned_data_does_not_affect_acceptance() -> None:
    pdu = make_pdu()
    pdu["unsigned"] = {"age": 5}
    assert not check_received_pdu(pdu, room_version=V11, get_verify_key=lookup).redacted_for_hash_mismatch


def test_edus_only_speak_for_users_of_the_sending_server() -> None:
    assert edu_sender_matches_origin("@bob:origin.test", "origin.test")
    assert edu_sender_matches_origin("@bob:origin.test:8448", "origin.test:8448")
    assert not edu_sender_matches_origin("@bob:victim.test", "origin.test")
    assert not edu_sender_matches_origin(None, "origin.test")


@pytest.mark.parametrize("version", ["5", "11"])
def test_content_nested_thousands_deep_is_dropped_not_a_recursion_error(version: str) -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(5000):
        deep = {"d": deep}
    pdu = make_pdu()
    pdu["content"] = deep
    with pytest.raises(DroppedPdu, match="nested too deeply"):
        check_received_pdu(pdu, room_version=get_room_version(version), get_verify_key=lookup)
    # Control: nesting an ordinary client could send (the body parser allows 64 levels) is fine.
    shallow: dict[str, Any] = {"leaf": 1}
    for _ in range(60):
        shallow = {"d": shallow}
    ok = make_pdu(content=shallow)
    assert check_received_pdu(ok, room_version=V11, get_verify_key=lookup).event.content == shallow

"""Spec limits, each at the limit (accepted) and one past it (refused cleanly).

Spec: client-server API "Size limits" (an event ≤ 65,536 bytes as canonical JSON; sender,
room_id, state_key, type and event_id ≤ 255 bytes), appendices "User Identifiers"
(new localparts ``[a-z0-9._=\\-/+]``, user IDs ≤ 255 bytes) and "Server Name".
The X-Matrix request signature (method, uri, origin, destination, content; ``destination``
must be our name) is checked by ``dagcore.protocol.request_auth`` and unit-tested in
``dagcore/protocol/tests/test_request_auth.py`` until the Embassy serves signed endpoints.
"""

from __future__ import annotations

import json
import secrets

import pytest

from dagcore.actions.send_event import PDU_OVERHEAD_BYTES
from dagcore.protocol.pdu_validation import MAX_PDU_BYTES
from tests.security.kit import SEND, STATE, assert_error, assert_unharmed, shared_room, txn
from tests.support.client import MatrixClient, q


def _canonical_len(obj: object) -> int:
    return len(json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode())


def test_an_event_at_the_size_limit_is_accepted_and_one_byte_more_is_413(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = shared_room(alice, bob)
    event_type = "m.room.message"
    base = {"msgtype": "m.text", "body": ""}
    # The largest content whose event fits (the server reserves PDU_OVERHEAD_BYTES for its own keys).
    room_for_body = MAX_PDU_BYTES - PDU_OVERHEAD_BYTES - len(event_type) - _canonical_len(base)
    at_limit = {**base, "body": "x" * room_for_body}
    event_id = alice.put(f"/rooms/{q(room)}/send/{event_type}/{txn()}", at_limit, spec=SEND).json["event_id"]
    got = bob.get(f"/rooms/{q(room)}/event/{q(event_id)}").json
    assert len(got["content"]["body"]) == room_for_body
    past = {**base, "body": "x" * (room_for_body + 1)}
    r = alice.put(f"/rooms/{q(room)}/send/{event_type}/{txn()}", past, expect=None)
    assert_error(r, 413, "M_TOO_LARGE")
    r = alice.put(f"/rooms/{q(room)}/state/org.example.big/", past, expect=None)
    assert_error(r, 413, "M_TOO_LARGE")
    # Multi-byte characters count as their UTF-8 bytes.
    wide = {**base, "body": "é" * (room_for_body // 2 + 1)}
    assert_error(
        alice.put(f"/rooms/{q(room)}/send/{event_type}/{txn()}", wide, expect=None), 413, "M_TOO_LARGE"
    )
    assert_unharmed(alice, bob, room)


def test_a_member_event_grown_by_a_huge_profile_is_refused_not_stored(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = shared_room(alice, bob)
    r = bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "b" * 70_000}, expect=None)
    assert r.status in (200, 400, 413), r
    if r.status != 200:
        assert_error(r, r.status)
    members = alice.get(f"/rooms/{q(room)}/members").json["chunk"]
    assert all(len(json.dumps(m)) < MAX_PDU_BYTES for m in members)
    assert_unharmed(bob, alice, room)


@pytest.mark.parametrize("what", ["type", "state_key"])
def test_types_and_state_keys_up_to_255_bytes_are_accepted_and_longer_refused(make_client, what: str) -> None:
    alice, bob = make_client(), make_client()
    room = shared_room(alice, bob)

    def path(value: str) -> str:
        if what == "type":
            return f"/rooms/{q(room)}/state/{q(value)}/"
        return f"/rooms/{q(room)}/state/org.example.s/{q(value)}"

    for value in ("t" * 255, "é" * 127 + "t"):  # 255 bytes, the second in two-byte characters
        alice.put(path(value), {"ok": True}, spec=STATE)
    for value in ("t" * 256, "é" * 128):  # 256 bytes
        assert_error(alice.put(path(value), {"ok": False}, expect=None), 400, "M_INVALID_PARAM")
    if what == "type":
        alice.put(f"/rooms/{q(room)}/send/{q('m' * 255)}/{txn()}", {}, spec=SEND)
        r = alice.put(f"/rooms/{q(room)}/send/{q('m' * 256)}/{txn()}", {}, expect=None)
        assert_error(r, 400, "M_INVALID_PARAM")
    assert_unharmed(alice, bob, room)


def test_overlong_room_and_event_ids_in_paths_are_refused_cleanly(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = shared_room(alice, bob)
    long_room = "!" + "r" * 300 + ":localhost"
    long_event = "$" + "e" * 300
    for method, path, body in [
        ("PUT", f"/rooms/{q(long_room)}/send/m.room.message/{txn()}", {"body": "x"}),
        ("GET", f"/rooms/{q(long_room)}/messages?dir=b", None),
        ("POST", f"/join/{q(long_room)}", {}),
        ("PUT", f"/rooms/{q(room)}/redact/{q(long_event)}/{txn()}", {}),
        ("GET", f"/rooms/{q(room)}/event/{q(long_event)}", None),
        ("GET", f"/rooms/{q(room)}/context/{q(long_event)}", None),
        ("POST", f"/rooms/{q(room)}/receipt/m.read/{q(long_event)}", {}),
    ]:
        r = alice.request(method, path, body, expect=None)
        assert 400 <= r.status < 500, (path, r)
        assert_error(r, r.status)
    assert_unharmed(alice, bob, room)


@pytest.mark.parametrize(
    "localpart",
    ["Alice", "ALICE", "al ice", "al:ice", "al@ice", "al#ice", "élan", "al\tice", "al\x00ice", "a\u200bb",
     "al!ice", "al*ice", "al'ice", ""],
)  # fmt: skip
def test_new_localparts_outside_the_grammar_are_refused(dagma_server, localpart: str) -> None:
    c = MatrixClient(dagma_server.base_url)
    body = {"username": localpart, "password": "correct horse battery", "auth": {"type": "m.login.dummy"}}
    # U+0000 is refused with the whole body or query string, before any field is read.
    nul = "\x00" in localpart
    r = c.post("/register", body, auth=False, expect=None)
    assert_error(r, 400, "M_BAD_JSON" if nul else "M_INVALID_USERNAME")
    r = c.get("/register/available", params={"username": localpart}, auth=False, expect=None)
    assert_error(r, 400, "M_INVALID_PARAM" if nul else "M_INVALID_USERNAME")
    c.close()


def test_every_allowed_localpart_character_registers(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    localpart = f"a.b_c=d-e/f+g{secrets.token_hex(2)}"
    c.register(localpart)
    assert c.user_id == f"@{localpart}:localhost"
    c.close()


def test_user_ids_up_to_255_bytes_register_and_longer_are_refused(dagma_server) -> None:
    suffix = ":localhost"
    room = 255 - len("@") - len(suffix)
    c = MatrixClient(dagma_server.base_url)
    localpart = secrets.token_hex(4) + "u" * (room - 8)
    c.register(localpart)
    assert c.user_id is not None and len(c.user_id.encode()) == 255
    body = {
        "username": localpart + "u",
        "password": "correct horse battery",
        "auth": {"type": "m.login.dummy"},
    }
    assert_error(c.post("/register", body, auth=False, expect=None), 400, "M_INVALID_USERNAME")
    c.close()


# (The spec's grammar does allow "-example.org" and any 1-5 digit port such as ":99999".)
BAD_SERVER_NAMES = ["bad_server", "exa mple.org", "example.org:123456", "example.org:", "[::1", "1.2.3.4.5:x",
                    "a" * 300, "exa\x00mple.org", "example.org/path", "ex@mple.org"]  # fmt: skip


@pytest.mark.parametrize("server_name", BAD_SERVER_NAMES)
def test_identifiers_with_invalid_server_names_are_refused(make_client, server_name: str) -> None:
    alice = make_client()
    room = alice.create_room()
    # In a JSON body, U+0000 is refused with the whole body (M_BAD_JSON) before the ID is read.
    in_body = "M_BAD_JSON" if "\x00" in server_name else "M_INVALID_PARAM"
    r = alice.post(f"/rooms/{q(room)}/invite", {"user_id": f"@bob:{server_name}"}, expect=None)
    assert_error(r, 400, in_body)
    r = alice.put(f"/directory/room/{q('#alias:' + server_name)}", {"room_id": room}, expect=None)
    assert_error(r, 400, "M_INVALID_PARAM")
    r = alice.post(f"/join/{q('#alias:' + server_name)}", {}, expect=None)
    assert_error(r, 400, "M_INVALID_PARAM")
    r = alice.get(f"/profile/{q('@bob:' + server_name)}", expect=None)
    assert 400 <= r.status < 500 and r.json.get("errcode") in ("M_INVALID_PARAM", "M_NOT_FOUND"), r
    r = alice.post("/createRoom", {"invite": [f"@bob:{server_name}"]}, expect=None)
    assert_error(r, 400, in_body)
    # Control: well-formed names (even of other servers) are at least understood.
    r = alice.post(f"/rooms/{q(room)}/invite", {"user_id": "@bob:example.org"}, expect=None)
    # The ID itself was fine: the invite went to federation, whose failure names the server.
    assert r.status == 502 and "example.org" in r.json["error"], r

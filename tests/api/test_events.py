"""Sending events, room state, single events and redactions over HTTP."""

from __future__ import annotations

from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer

STATE = "/rooms/{roomId}/state/{eventType}/{stateKey}"


def _login_again(c: MatrixClient, base_url: str) -> MatrixClient:
    """A second device of the same account."""
    other = MatrixClient(base_url)
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": c.user_id},
        "password": "correct horse battery",
    }
    r = other.post("/login", body, auth=False)
    other.access_token = r.json["access_token"]
    other.user_id = r.json["user_id"]
    return other


def test_a_retried_transaction_returns_the_same_event_and_another_device_sends_a_new_one(
    make_client, dagma_server
) -> None:
    alice = make_client()
    room = alice.create_room()
    path = f"/rooms/{q(room)}/send/m.room.message/txn-1"
    spec = "/rooms/{roomId}/send/{eventType}/{txnId}"
    first = alice.put(path, {"msgtype": "m.text", "body": "once"}, spec=spec).json["event_id"]
    again = alice.put(path, {"msgtype": "m.text", "body": "once"}, spec=spec).json["event_id"]
    assert again == first
    laptop = _login_again(alice, dagma_server.base_url)
    try:
        other = laptop.put(path, {"msgtype": "m.text", "body": "once"}, spec=spec).json["event_id"]
    finally:
        laptop.close()
    assert other != first
    chunk = alice.get(f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 5}).json["chunk"]
    texts = [e for e in chunk if e["type"] == "m.room.message"]
    assert len(texts) == 2
    # Only the sending device sees its transaction ID.
    mine = next(e for e in texts if e["event_id"] == first)
    assert mine["unsigned"]["transaction_id"] == "txn-1"
    assert "transaction_id" not in next(e for e in texts if e["event_id"] == other)["unsigned"]


def test_send_refuses_non_members_and_bad_content(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = alice.create_room()
    spec = "/rooms/{roomId}/send/{eventType}/{txnId}"
    # The spec lists no 403 for /send; Synapse and Dagma answer M_FORBIDDEN.
    r = mallory.put(f"/rooms/{q(room)}/send/m.room.message/t1", {"body": "x"}, expect=403)
    assert r.json["errcode"] == "M_FORBIDDEN"
    assert (
        alice.put(f"/rooms/{q(room)}/send/m.room.message/t2", [1, 2], expect=400).json["errcode"]
        == "M_BAD_JSON"
    )
    assert (
        alice.put(f"/rooms/{q(room)}/send/m.room.message/t3", {"n": 1.5}, expect=400).json["errcode"]
        == "M_BAD_JSON"
    )
    big = alice.put(f"/rooms/{q(room)}/send/m.room.message/t4", {"body": "x" * 66000}, expect=413)
    assert big.json["errcode"] == "M_TOO_LARGE"
    assert (
        alice.put(f"/rooms/{q(room)}/send/m.room.message/t%00", {"body": "x"}, expect=400).json["errcode"]
        == "M_INVALID_PARAM"
    )
    alice.put(f"/rooms/{q(room)}/send/m.room.message/t5", {"msgtype": "m.text", "body": "fine"}, spec=spec)


def test_state_put_and_get_with_and_without_state_key(make_client) -> None:
    alice, bob, mallory = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    r = alice.put(f"/rooms/{q(room)}/state/m.room.topic", {"topic": "no key form"}, spec=STATE)
    assert r.json["event_id"].startswith("$")
    assert bob.get(f"/rooms/{q(room)}/state/m.room.topic", spec=STATE).json["topic"] == "no key form"
    alice.put(f"/rooms/{q(room)}/state/org.example.thing/some%2Fkey", {"a": 1}, spec=STATE)
    assert bob.get(f"/rooms/{q(room)}/state/org.example.thing/some%2Fkey", spec=STATE).json == {"a": 1}
    missing = bob.get(f"/rooms/{q(room)}/state/org.example.thing/other", expect=404, spec=STATE)
    assert missing.json["errcode"] == "M_NOT_FOUND"
    assert (
        mallory.get(f"/rooms/{q(room)}/state/m.room.topic", expect=403, spec=STATE).json["errcode"]
        == "M_FORBIDDEN"
    )
    # bob (power 0) may not set room state.
    assert (
        bob.put(f"/rooms/{q(room)}/state/m.room.topic", {"topic": "x"}, expect=403, spec=STATE).json[
            "errcode"
        ]
        == "M_FORBIDDEN"
    )
    alice.get(f"/rooms/{q(room)}/state/m.room.topic", params={"format": "garbage"}, expect=400)


def test_state_keys_naming_another_user_are_refused_in_v11(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(room_version="11")
    r = alice.put(
        f"/rooms/{q(room)}/state/org.example.pref/{q(bob.user_id)}", {"x": 1}, expect=403, spec=STATE
    )
    assert r.json["errcode"] == "M_FORBIDDEN"
    alice.put(f"/rooms/{q(room)}/state/org.example.pref/{q(alice.user_id)}", {"x": 1}, spec=STATE)


def test_full_state_and_a_departed_members_view_of_it(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat", name="Before")
    bob.join(room)
    bob.post(f"/rooms/{q(room)}/leave")
    alice.put(f"/rooms/{q(room)}/state/m.room.name/", {"name": "After"})
    now = alice.get(f"/rooms/{q(room)}/state", spec="/rooms/{roomId}/state").json
    assert next(e for e in now if e["type"] == "m.room.name")["content"]["name"] == "After"
    then = bob.get(f"/rooms/{q(room)}/state", spec="/rooms/{roomId}/state").json
    assert next(e for e in then if e["type"] == "m.room.name")["content"]["name"] == "Before"
    stranger = make_client()
    stranger.get(f"/rooms/{q(room)}/state", expect=403, spec="/rooms/{roomId}/state")


def test_get_event_for_members_and_404_for_others(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = alice.create_room()
    event_id = alice.send(room, "hello")
    spec = "/rooms/{roomId}/event/{eventId}"
    r = alice.get(f"/rooms/{q(room)}/event/{q(event_id)}", spec=spec)
    assert r.json["content"]["body"] == "hello" and r.json["room_id"] == room
    assert (
        mallory.get(f"/rooms/{q(room)}/event/{q(event_id)}", expect=404, spec=spec).json["errcode"]
        == "M_NOT_FOUND"
    )
    alice.get(f"/rooms/{q(room)}/event/{q('$nope')}", expect=404, spec=spec)


def test_redaction_of_own_event_is_allowed_and_of_others_needs_power(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat", room_version="11")
    bob.join(room)
    alices = alice.send(room, "alice secret")
    bobs = bob.send(room, "bob secret")
    spec = "/rooms/{roomId}/redact/{eventId}/{txnId}"
    refused = bob.put(f"/rooms/{q(room)}/redact/{q(alices)}/r1", {"reason": "no"}, expect=403)
    assert refused.json["errcode"] == "M_FORBIDDEN"
    own = bob.put(f"/rooms/{q(room)}/redact/{q(bobs)}/r2", {"reason": "typo"}, spec=spec).json["event_id"]
    assert (
        bob.put(f"/rooms/{q(room)}/redact/{q(bobs)}/r2", {"reason": "typo"}, spec=spec).json["event_id"]
        == own
    )
    mod = alice.put(f"/rooms/{q(room)}/redact/{q(alices)}/r3", {}, spec=spec).json["event_id"]
    assert mod.startswith("$")

    pruned = alice.get(f"/rooms/{q(room)}/event/{q(bobs)}", spec="/rooms/{roomId}/event/{eventId}").json
    assert pruned["content"] == {}
    assert pruned["unsigned"]["redacted_because"]["event_id"] == own
    redaction = alice.get(f"/rooms/{q(room)}/event/{q(own)}", spec="/rooms/{roomId}/event/{eventId}").json
    # v11: redacts lives in content; clients also get it at the top level.
    assert redaction["content"]["redacts"] == bobs and redaction["redacts"] == bobs
    untouched = alice.get(f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 10}).json["chunk"]
    assert all(e["content"] == {} for e in untouched if e["event_id"] in (alices, bobs))


def test_messages_are_rate_limited(tmp_path) -> None:
    server = LiveServer(tmp_path, config={"rc_message": {"per_second": 0.001, "burst_count": 4}}).start()
    try:
        alice = MatrixClient(server.base_url).register()
        room = alice.create_room()  # one token
        alice.send(room, "1")
        alice.send(room, "2")
        alice.send(room, "3")
        r = alice.put(f"/rooms/{q(room)}/send/m.room.message/over", {"body": "4"}, expect=429)
        assert r.json["errcode"] == "M_LIMIT_EXCEEDED"
    finally:
        server.destroy()

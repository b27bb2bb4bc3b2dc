"""Class 1 — event authenticity (client side).

A client speaks only for itself: whatever its body says, the events, typing
notices, receipts, presence and to-device messages it causes carry its own user
ID, a server-chosen event ID and the server's clock.
"""

from __future__ import annotations

import time

from tests.security.kit import SEND, STATE, assert_error, assert_unharmed, marker, shared_room, txn
from tests.support.client import q


def _event(client, room_id: str, event_id: str) -> dict:
    return client.get(f"/rooms/{q(room_id)}/event/{q(event_id)}", spec="/rooms/{roomId}/event/{eventId}").json


def test_sender_event_id_and_timestamp_in_the_body_do_not_forge_the_event(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = shared_room(alice, mallory)
    mark = marker()
    forged = {
        "msgtype": "m.text",
        "body": mark,
        "sender": alice.user_id,
        "event_id": "$forged:localhost",
        "origin_server_ts": 1,
        "room_id": "!elsewhere:localhost",
        "unsigned": {"age": 1},
    }
    before = int(time.time() * 1000)
    event_id = mallory.put(f"/rooms/{q(room)}/send/m.room.message/{txn()}", forged, spec=SEND).json[
        "event_id"
    ]
    assert event_id != "$forged:localhost"
    seen = _event(alice, room, event_id)
    # The body is the content, and only the content: the envelope is the server's.
    assert seen["sender"] == mallory.user_id
    assert seen["event_id"] == event_id
    assert seen["room_id"] == room
    assert seen["origin_server_ts"] >= before - 5000
    assert seen["content"]["body"] == mark
    # Control: alice's own message carries alice's name.
    own = alice.put(f"/rooms/{q(room)}/send/m.room.message/{txn()}", {"msgtype": "m.text", "body": "x"}).json
    assert _event(mallory, room, own["event_id"])["sender"] == alice.user_id
    assert_unharmed(alice, mallory, room)


def test_the_appservice_ts_parameter_is_ignored_for_ordinary_users(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = shared_room(alice, bob)
    path = f"/rooms/{q(room)}/send/m.room.message/{txn()}"
    event_id = alice.put(path, {"msgtype": "m.text", "body": "then"}, params={"ts": "1000"}, spec=SEND).json[
        "event_id"
    ]
    assert _event(bob, room, event_id)["origin_server_ts"] > 1_600_000_000_000
    state = alice.put(
        f"/rooms/{q(room)}/state/m.room.topic/", {"topic": "t"}, params={"ts": "1000"}, spec=STATE
    ).json["event_id"]
    assert _event(bob, room, state)["origin_server_ts"] > 1_600_000_000_000
    assert_unharmed(alice, bob, room)


def test_a_member_event_for_another_user_cannot_join_them(make_client) -> None:
    alice, bob, mallory = make_client(), make_client(), make_client()
    room = shared_room(alice, mallory)
    path = f"/rooms/{q(room)}/state/m.room.member/{q(bob.user_id)}"
    r = mallory.put(path, {"membership": "join", "displayname": "bob"}, expect=None, spec=STATE)
    assert_error(r, 403, "M_FORBIDDEN")
    members = alice.get(f"/rooms/{q(room)}/joined_members").json["joined"]
    assert bob.user_id not in members
    # Control: mallory may change her own member event.
    mine = f"/rooms/{q(room)}/state/m.room.member/{q(mallory.user_id)}"
    mallory.put(mine, {"membership": "join", "displayname": "M"}, spec=STATE)
    assert_unharmed(alice, mallory, room)


def test_typing_for_another_user_is_refused(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = shared_room(alice, mallory)
    spec = "/rooms/{roomId}/typing/{userId}"
    r = mallory.put(f"/rooms/{q(room)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 30000},
                    expect=None)  # fmt: skip
    assert_error(r, 403, "M_FORBIDDEN")
    mallory.put(
        f"/rooms/{q(room)}/typing/{q(mallory.user_id)}", {"typing": True, "timeout": 30000}, spec=spec
    )
    typing = [
        e
        for e in alice.sync()["rooms"]["join"][room].get("ephemeral", {}).get("events", [])
        if e["type"] == "m.typing"
    ]
    users = {u for e in typing for u in e["content"]["user_ids"]}
    assert alice.user_id not in users and mallory.user_id in users
    assert_unharmed(alice, mallory, room)


def test_a_receipt_is_always_the_senders_own(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = shared_room(alice, mallory)
    event_id = alice.send(room, "read me")
    spec = "/rooms/{roomId}/receipt/{receiptType}/{eventId}"
    mallory.post(
        f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {"user_id": alice.user_id, "thread_id": "main"},
        spec=spec,
    )  # fmt: skip
    receipts = [
        e
        for e in alice.sync()["rooms"]["join"][room].get("ephemeral", {}).get("events", [])
        if e["type"] == "m.receipt"
    ]
    readers = {u for e in receipts for r in e["content"].values() for u in r.get("m.read", {})}
    assert mallory.user_id in readers and alice.user_id not in readers
    assert_unharmed(alice, mallory, room)


def test_presence_for_another_user_is_refused(make_client) -> None:
    alice, mallory = make_client(), make_client()
    spec = "/presence/{userId}/status"
    r = mallory.put(f"/presence/{q(alice.user_id)}/status", {"presence": "online", "status_msg": "pwned"},
                    expect=None)  # fmt: skip
    assert_error(r, 403, "M_FORBIDDEN")
    mallory.put(
        f"/presence/{q(mallory.user_id)}/status", {"presence": "online", "status_msg": "me"}, spec=spec
    )
    room = shared_room(alice, mallory)
    got = mallory.get(f"/presence/{q(alice.user_id)}/status", spec=spec).json
    assert got.get("status_msg") != "pwned"
    assert_unharmed(alice, mallory, room)


def test_a_to_device_message_carries_its_real_sender(make_client) -> None:
    alice, mallory = make_client(), make_client()
    alice.sync()
    since = alice.sync()["next_batch"]
    body = {"messages": {alice.user_id: {"*": {"sender": alice.user_id, "secret": "x"}}}}
    mallory.put(f"/sendToDevice/m.test/{txn()}", body, spec="/sendToDevice/{eventType}/{txnId}")
    events = alice.sync(since=since)["to_device"]["events"]
    assert events and all(e["sender"] == mallory.user_id for e in events)


def test_the_user_id_query_parameter_does_not_masquerade(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = shared_room(alice, mallory)
    mark = marker()
    r = mallory.put(f"/rooms/{q(room)}/send/m.room.message/{txn()}", {"msgtype": "m.text", "body": mark},
                    params={"user_id": alice.user_id}, expect=None)  # fmt: skip
    assert_error(r, 403, "M_FORBIDDEN")
    r = mallory.get("/account/whoami", params={"user_id": alice.user_id}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    # Control: naming yourself is harmless.
    me = mallory.get("/account/whoami", params={"user_id": mallory.user_id}, spec="/account/whoami").json
    assert me["user_id"] == mallory.user_id
    assert_unharmed(alice, mallory, room, absent=mark)

"""Typing notices, receipts and read markers against a live server, seen through ``/sync``."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.api.test_sync import sync, uid
from tests.support.client import MatrixClient, q
from tests.support.live import wait_for_waiters

TYPING = "/rooms/{roomId}/typing/{userId}"
RECEIPT = "/rooms/{roomId}/receipt/{receiptType}/{eventId}"
READ_MARKERS = "/rooms/{roomId}/read_markers"


def ephemeral(body: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    events = body.get("rooms", {}).get("join", {}).get(room_id, {}).get("ephemeral", {}).get("events", [])
    return [e for e in events if e["type"] == event_type]


def shared_room(make_client) -> tuple[MatrixClient, MatrixClient, str]:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    return alice, bob, room


# --------------------------------------------------------------------------- typing


def test_typing_is_seen_by_the_other_member_and_stops(make_client) -> None:
    alice, bob, room = shared_room(make_client)
    first = sync(bob)
    alice.put(f"/rooms/{q(room)}/typing/{q(uid(alice))}", {"typing": True, "timeout": 30000}, spec=TYPING)
    body = sync(bob, first["next_batch"])
    assert ephemeral(body, room, "m.typing") == [
        {"type": "m.typing", "content": {"user_ids": [alice.user_id]}}
    ]
    alice.put(f"/rooms/{q(room)}/typing/{q(uid(alice))}", {"typing": False}, spec=TYPING)
    body = sync(bob, body["next_batch"])
    assert ephemeral(body, room, "m.typing") == [{"type": "m.typing", "content": {"user_ids": []}}]


def test_typing_renewal_does_not_wake_anyone_but_expiry_does(make_client) -> None:
    alice, bob, room = shared_room(make_client)
    alice.put(f"/rooms/{q(room)}/typing/{q(uid(alice))}", {"typing": True, "timeout": 1500})
    body = sync(bob)
    assert ephemeral(body, room, "m.typing")[0]["content"]["user_ids"] == [alice.user_id]
    # A renewal while typing changes nothing others see.
    alice.put(f"/rooms/{q(room)}/typing/{q(uid(alice))}", {"typing": True, "timeout": 1500})
    quiet = sync(bob, body["next_batch"])
    assert ephemeral(quiet, room, "m.typing") == []
    # The notice runs out: a long-poll is woken with the empty list.
    started = time.monotonic()
    woken = sync(bob, quiet["next_batch"], timeout=10000)
    assert time.monotonic() - started < 6
    assert ephemeral(woken, room, "m.typing")[0]["content"]["user_ids"] == []


def test_typing_for_someone_else_or_in_a_room_you_are_not_in_is_forbidden(make_client) -> None:
    alice, bob, room = shared_room(make_client)
    r = alice.put(f"/rooms/{q(room)}/typing/{q(uid(bob))}", {"typing": True}, expect=403)
    assert r.json["errcode"] == "M_FORBIDDEN"
    carol = make_client()
    r = carol.put(f"/rooms/{q(room)}/typing/{q(uid(carol))}", {"typing": True}, expect=403)
    assert r.json["errcode"] == "M_FORBIDDEN"
    r = alice.put(f"/rooms/{q(room)}/typing/{q(uid(alice))}", {"typing": "yes"}, expect=400)
    assert r.json["errcode"] == "M_BAD_JSON"
    alice.put(f"/rooms/{q(room)}/typing/{q(uid(alice))}", {"typing": True}, spec=TYPING)


# --------------------------------------------------------------------------- receipts


def test_read_receipt_is_shared_with_the_room(make_client) -> None:
    alice, bob, room = shared_room(make_client)
    event_id = alice.send(room, "read me")
    first = sync(alice)
    bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {}, spec=RECEIPT)
    receipts = ephemeral(sync(alice, first["next_batch"]), room, "m.receipt")
    assert receipts[0]["content"][event_id]["m.read"][bob.user_id]["ts"] > 0


def test_private_receipt_is_only_seen_by_its_owner(make_client) -> None:
    alice, bob, room = shared_room(make_client)
    event_id = alice.send(room, "secret read")
    a_first, b_first = sync(alice), sync(bob)
    bob.post(f"/rooms/{q(room)}/receipt/m.read.private/{q(event_id)}", {}, spec=RECEIPT)
    assert ephemeral(sync(alice, a_first["next_batch"]), room, "m.receipt") == []
    mine = ephemeral(sync(bob, b_first["next_batch"]), room, "m.receipt")
    assert bob.user_id in mine[0]["content"][event_id]["m.read.private"]


def test_threaded_receipt_carries_its_thread_id(make_client) -> None:
    alice, bob, room = shared_room(make_client)
    root = alice.send(room, "root")
    reply = alice.send(
        room,
        content={
            "msgtype": "m.text",
            "body": "reply",
            "m.relates_to": {"rel_type": "m.thread", "event_id": root},
        },
    )
    first = sync(alice)
    bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(reply)}", {"thread_id": root}, spec=RECEIPT)
    receipts = ephemeral(sync(alice, first["next_batch"]), room, "m.receipt")
    assert receipts[0]["content"][reply]["m.read"][bob.user_id]["thread_id"] == root
    # An event outside the thread cannot be receipted for it.
    other = alice.send(room, "main timeline")
    r = bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(other)}", {"thread_id": root}, expect=400, spec=RECEIPT)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(other)}", {"thread_id": ""}, expect=400, spec=RECEIPT)
    assert r.json["errcode"] == "M_INVALID_PARAM"


def test_receipts_are_refused_outside_the_room_and_for_unknown_types(make_client) -> None:
    alice, bob, room = shared_room(make_client)
    event_id = alice.send(room, "x")
    carol = make_client()
    r = carol.post(f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {}, expect=403)
    assert r.json["errcode"] == "M_FORBIDDEN"
    r = bob.post(f"/rooms/{q(room)}/receipt/m.nonsense/{q(event_id)}", {}, expect=400, spec=RECEIPT)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = bob.post(f"/rooms/{q(room)}/receipt/m.fully_read/{q(event_id)}", {"thread_id": "main"}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = bob.post(f"/rooms/{q(room)}/receipt/m.read/{q('$unknown:localhost')}", {}, expect=404)
    assert r.json["errcode"] == "M_NOT_FOUND"
    bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {}, spec=RECEIPT)


def test_receipts_never_move_backwards(make_client) -> None:
    alice, bob, room = shared_room(make_client)
    older = alice.send(room, "older")
    newer = alice.send(room, "newer")
    bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(newer)}", {})
    first = sync(alice)
    bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(older)}", {})
    assert ephemeral(sync(alice, first["next_batch"]), room, "m.receipt") == []


def test_receipt_wakes_a_long_poll(make_client) -> None:
    alice, bob, room = shared_room(make_client)
    event_id = alice.send(room, "wake")
    first = sync(alice)
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.update(body=sync(alice, first["next_batch"], timeout=15000)))
    t.start()
    wait_for_waiters(alice.base_url, uid(alice))  # the poll waits: only a wake-up can answer it now
    bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {})
    t.join(10)
    assert not t.is_alive(), "the long-poll was not woken"
    assert ephemeral(out["body"], room, "m.receipt")


# --------------------------------------------------------------------------- read markers


def test_read_markers_set_fully_read_and_receipts(make_client) -> None:
    alice, bob, room = shared_room(make_client)
    e1 = alice.send(room, "one")
    e2 = alice.send(room, "two")
    a_first, b_first = sync(alice), sync(bob)
    bob.post(
        f"/rooms/{q(room)}/read_markers",
        {"m.fully_read": e1, "m.read": e2, "m.read.private": e2},
        spec=READ_MARKERS,
    )
    body = sync(bob, b_first["next_batch"])
    entry = body["rooms"]["join"][room]
    assert {"type": "m.fully_read", "content": {"event_id": e1}} in entry["account_data"]["events"]
    assert bob.user_id in ephemeral(body, room, "m.receipt")[0]["content"][e2]["m.read"]
    seen_by_alice = ephemeral(sync(alice, a_first["next_batch"]), room, "m.receipt")[0]["content"][e2]
    assert "m.read.private" not in seen_by_alice
    assert bob.get(
        f"/user/{q(uid(bob))}/rooms/{q(room)}/account_data/m.fully_read",
        spec="/user/{userId}/rooms/{roomId}/account_data/{type}",
    ).json == {"event_id": e1}


def test_fully_read_through_the_receipt_endpoint_and_outsiders_refused(make_client) -> None:
    alice, bob, room = shared_room(make_client)
    e1 = alice.send(room, "one")
    bob.post(f"/rooms/{q(room)}/receipt/m.fully_read/{q(e1)}", {}, spec=RECEIPT)
    assert bob.get(f"/user/{q(uid(bob))}/rooms/{q(room)}/account_data/m.fully_read").json == {"event_id": e1}
    carol = make_client()
    r = carol.post(f"/rooms/{q(room)}/read_markers", {"m.fully_read": e1}, expect=403)
    assert r.json["errcode"] == "M_FORBIDDEN"

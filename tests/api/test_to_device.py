"""Send-to-device messages against a live server: delivery through ``/sync``, acknowledgement, idempotency."""

from __future__ import annotations

import secrets
import threading
from typing import Any

from tests.api.test_sync import sync, uid
from tests.support.client import MatrixClient
from tests.support.live import wait_for_waiters

SEND = "/sendToDevice/{eventType}/{txnId}"


def to_device(body: dict[str, Any]) -> list[dict[str, Any]]:
    return body.get("to_device", {}).get("events", [])


def login_again(client: MatrixClient, password: str = "correct horse battery") -> MatrixClient:
    other = MatrixClient(client.base_url)
    r = other.post(
        "/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": client.user_id},
            "password": password,
        },
        auth=False,
    )
    other.access_token = r.json["access_token"]
    other.user_id = r.json["user_id"]
    other.device_id = r.json["device_id"]
    return other


def test_message_is_delivered_to_the_device_and_kept_until_acknowledged(make_client) -> None:
    alice, bob = make_client(), make_client()
    first = sync(bob)
    txn = secrets.token_hex(4)
    alice.put(
        f"/sendToDevice/m.test/{txn}", {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}}, spec=SEND
    )
    body = sync(bob, first["next_batch"])
    assert to_device(body) == [{"type": "m.test", "sender": alice.user_id, "content": {"n": 1}}]
    # Not acknowledged yet (same since token): delivered again.
    assert to_device(sync(bob, first["next_batch"])) == to_device(body)
    # Syncing from the new token acknowledges it: gone.
    after = sync(bob, body["next_batch"])
    assert to_device(after) == []
    assert to_device(sync(bob, first["next_batch"])) == []


def test_retried_transaction_is_delivered_once(make_client) -> None:
    alice, bob = make_client(), make_client()
    first = sync(bob)
    body = {"messages": {bob.user_id: {bob.device_id: {"n": "once"}}}}
    alice.put("/sendToDevice/m.test/same-txn", body, spec=SEND)
    alice.put("/sendToDevice/m.test/same-txn", body, spec=SEND)
    assert len(to_device(sync(bob, first["next_batch"]))) == 1


def test_wildcard_reaches_every_device_of_the_user(make_client) -> None:
    alice, bob = make_client(), make_client()
    bob2 = login_again(bob)
    f1, f2 = sync(bob), sync(bob2)
    alice.put(
        f"/sendToDevice/m.test/{secrets.token_hex(4)}",
        {"messages": {bob.user_id: {"*": {"all": True}}}},
        spec=SEND,
    )
    assert to_device(sync(bob, f1["next_batch"]))[0]["content"] == {"all": True}
    assert to_device(sync(bob2, f2["next_batch"]))[0]["content"] == {"all": True}


def test_other_devices_do_not_get_a_message_for_one_device(make_client) -> None:
    alice, bob = make_client(), make_client()
    bob2 = login_again(bob)
    f2 = sync(bob2)
    alice.put(
        f"/sendToDevice/m.test/{secrets.token_hex(4)}", {"messages": {bob.user_id: {bob.device_id: {}}}}
    )
    assert to_device(sync(bob2, f2["next_batch"])) == []


def send_numbered(sender: MatrixClient, receiver: MatrixClient, total: int) -> None:
    """``total`` to-device messages to the receiver's device, ``{"i": 0}`` to ``{"i": total - 1}``."""
    for i in range(total):
        sender.put(
            f"/sendToDevice/m.test/n{i}-{secrets.token_hex(2)}",
            {"messages": {receiver.user_id: {receiver.device_id: {"i": i}}}},
        )


def test_many_messages_come_in_batches_without_loss(make_client) -> None:
    alice, bob = make_client(), make_client()
    first = sync(bob)
    total = 130  # more than one sync delivers (100)
    send_numbered(alice, bob, total)
    seen: list[int] = []
    token = first["next_batch"]
    batches = 0
    while True:
        body = sync(bob, token)
        got = [e["content"]["i"] for e in to_device(body)]
        if not got:
            break
        batches += 1
        seen += got
        token = body["next_batch"]
    assert seen == list(range(total))
    assert batches == 2


def test_a_message_wakes_the_long_poll(make_client) -> None:
    alice, bob = make_client(), make_client()
    first = sync(bob)
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.update(body=sync(bob, first["next_batch"], timeout=15000)))
    t.start()
    wait_for_waiters(bob.base_url, uid(bob))  # the poll waits: only a wake-up can answer it now
    alice.put(
        f"/sendToDevice/m.test/{secrets.token_hex(4)}", {"messages": {bob.user_id: {bob.device_id: {"w": 1}}}}
    )
    t.join(10)
    assert not t.is_alive(), "the long-poll was not woken"
    assert to_device(out["body"])[0]["content"] == {"w": 1}


def test_malformed_messages_are_refused(make_client) -> None:
    alice, bob = make_client(), make_client()
    r = alice.put("/sendToDevice/m.test/bad1", {"messages": {"not-a-user": {"D": {}}}}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = alice.put("/sendToDevice/m.test/bad2", {"messages": {bob.user_id: {"D": "text"}}}, expect=400)
    assert r.json["errcode"] == "M_BAD_JSON"
    r = alice.put("/sendToDevice/m.test/bad3", {}, expect=400)
    assert r.json["errcode"] == "M_MISSING_PARAM"
    alice.put("/sendToDevice/m.test/good", {"messages": {bob.user_id: {bob.device_id: {}}}}, spec=SEND)


def test_device_key_counts_are_reported(make_client) -> None:
    bob = make_client()
    body = sync(bob)
    assert body["device_one_time_keys_count"]["signed_curve25519"] == 0
    assert body["device_unused_fallback_key_types"] == []

"""Two Dagma processes over TLS: typing, a read receipt and presence of a user on one server
show in /sync of a user on the other, both ways (issue 11; spec server-server API "Typing
Notifications", "Receipts", "Presence")."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    root = tmp_path_factory.mktemp("fedeph")
    ca = TestCA(root / "ca")
    made: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            cert = ca.issue("localhost", "127.0.0.1", stem=name)
            server = LiveServer(
                root / name,
                federation_tls=(cert.cert_path, cert.key_path),
                redis=False,
                config={"federation_custom_ca_list": [str(ca.cert_path)], "ip_range_whitelist": LOOPBACK},
            )
            made.append(server)
            server.start()
        yield made[0], made[1]
    finally:
        for server in made:
            server.destroy()


def _wait_sync(client: MatrixClient, found: Callable[[dict[str, Any]], Any], what: str) -> Any:
    """Long-poll /sync until ``found`` says yes (the answer wakes on the EDU's arrival)."""
    deadline = time.monotonic() + 60
    since: str | None = None
    while True:
        body = client.sync(since=since, timeout=5000, set_presence="offline")
        value = found(body)
        if value:
            return value
        since = body["next_batch"]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


def _ephemeral(body: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e["content"] for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]


def _typing(room_id: str, user_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: any(user_id in c["user_ids"] for c in _ephemeral(body, room_id, "m.typing"))


def _not_typing(room_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: any(c["user_ids"] == [] for c in _ephemeral(body, room_id, "m.typing"))


def _receipt(room_id: str, event_id: str, user_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: any(
        user_id in c.get(event_id, {}).get("m.read", {}) for c in _ephemeral(body, room_id, "m.receipt")
    )


def _presence(user_id: str, status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: any(
        e["sender"] == user_id and e["content"].get("status_msg") == status
        for e in body.get("presence", {}).get("events", [])
    )


def test_typing_receipts_and_presence_show_across_servers_both_ways(pair) -> None:
    a, b = pair
    alice = MatrixClient(a.base_url).register("alice")
    bob = MatrixClient(b.base_url).register("bob")
    try:
        room_id = alice.create_room(preset="public_chat", room_version="11")
        assert bob.post(f"/join/{q(room_id)}", params={"server_name": a.server_name}).json == {
            "room_id": room_id
        }
        a_user, b_user = str(alice.user_id), str(bob.user_id)

        # A -> B
        event_b = bob.send(room_id, "from bob")
        _wait_sync(alice, lambda body: event_b in str(body.get("rooms", {})), "Bob's message on A")
        assert (
            alice.put(f"/rooms/{q(room_id)}/typing/{q(a_user)}", {"typing": True, "timeout": 30000}).status
            == 200
        )
        _wait_sync(bob, _typing(room_id, a_user), "Alice typing on B")
        assert alice.post(f"/rooms/{q(room_id)}/receipt/m.read/{q(event_b)}", {}).status == 200
        _wait_sync(bob, _receipt(room_id, event_b, a_user), "Alice's receipt on B")
        assert (
            alice.put(f"/presence/{q(a_user)}/status", {"presence": "online", "status_msg": "on A"}).status
            == 200
        )
        _wait_sync(bob, _presence(a_user, "on A"), "Alice's presence on B")
        assert alice.put(f"/rooms/{q(room_id)}/typing/{q(a_user)}", {"typing": False}).status == 200
        _wait_sync(bob, _not_typing(room_id), "Alice stopped typing on B")

        # B -> A
        event_a = alice.send(room_id, "from alice")
        _wait_sync(bob, lambda body: event_a in str(body.get("rooms", {})), "Alice's message on B")
        assert (
            bob.put(f"/rooms/{q(room_id)}/typing/{q(b_user)}", {"typing": True, "timeout": 30000}).status
            == 200
        )
        _wait_sync(alice, _typing(room_id, b_user), "Bob typing on A")
        assert bob.post(f"/rooms/{q(room_id)}/receipt/m.read/{q(event_a)}", {}).status == 200
        _wait_sync(alice, _receipt(room_id, event_a, b_user), "Bob's receipt on A")
        assert (
            bob.put(f"/presence/{q(b_user)}/status", {"presence": "online", "status_msg": "on B"}).status
            == 200
        )
        _wait_sync(alice, _presence(b_user, "on B"), "Bob's presence on A")
    finally:
        alice.close()
        bob.close()

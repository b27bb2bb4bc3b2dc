"""Three Dagma processes over TLS sharing rooms joined for real (``POST /join`` through the
client API, make_join/send_join between the servers), then everything after it through the
outbox, the per-destination sender and ``/send``.

Every server is ``serve all`` without a broker (each sends from its in-process runner),
named ``localhost:<federation port>`` and trusting the suite's test CA. What a server holds
is read through its own client API (``/messages``, ``/sync``, ``/state``, ``/members``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer, LiveServer]]:
    root = tmp_path_factory.mktemp("fedrooms")
    ca = TestCA(root / "ca")
    config = {"federation_custom_ca_list": [str(ca.cert_path)], "ip_range_whitelist": LOOPBACK}
    made: list[LiveServer] = []
    for name in ("a", "b", "c"):
        cert = ca.issue("localhost", "127.0.0.1", stem=name)
        made.append(
            LiveServer(
                root / name,
                federation_tls=(cert.cert_path, cert.key_path),
                redis=False,  # no broker: serve all sends from its in-process runner
                config=config,
            )
        )
    try:
        # Two at a time: most of a start is migrating a fresh database, which waits on
        # PostgreSQL; more at once only lengthens each start on a 2-core machine.
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(LiveServer.start, made))
        yield made[0], made[1], made[2]
    finally:
        for server in made:
            server.destroy()


@pytest.fixture
def user(servers) -> Iterator[Callable[[LiveServer], MatrixClient]]:
    made: list[MatrixClient] = []

    def factory(server: LiveServer) -> MatrixClient:
        client = MatrixClient(server.base_url, timeout=120).register(f"u{secrets.token_hex(4)}")
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling what the server's client API shows, with a deadline


def timeline(client: MatrixClient, room_id: str, event_type: str = "m.room.message") -> list[dict[str, Any]]:
    """The room's events of ``event_type`` as ``/messages`` gives them on the client's server, oldest first."""
    chunk = client.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 1000}).json["chunk"]
    return [e for e in reversed(chunk) if e["type"] == event_type]


def bodies(client: MatrixClient, room_id: str) -> list[str]:
    return [e["content"].get("body") for e in timeline(client, room_id)]


def members(client: MatrixClient, room_id: str) -> dict[str, str]:
    """user -> membership, as the client's own server holds the room."""
    chunk = client.get(f"/rooms/{q(room_id)}/members").json["chunk"]
    return {e["state_key"]: e["content"]["membership"] for e in chunk}


def join_via(client: MatrixClient, room_id: str, server: LiveServer, **kw: Any) -> Any:
    return client.post(f"/join/{q(room_id)}", params={"server_name": server.server_name}, **kw)


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_after_a_real_join_messages_flow_both_ways_in_the_same_order(servers, user, version) -> None:
    a, b, _ = servers
    alice, bob = user(a), user(b)
    room_id = alice.create_room(preset="public_chat", room_version=version)
    assert join_via(bob, room_id, a).json == {"room_id": room_id}
    since = bob.sync()["next_batch"]
    for i in range(3):
        alice.send(room_id, f"a{i}")
    # Bob's /sync on B shows Alice's messages as they arrive, in the order she sent them.
    seen: list[str] = []
    deadline = time.monotonic() + 45
    while seen != ["a0", "a1", "a2"]:
        assert time.monotonic() < deadline, f"Alice's messages on B: {seen}"
        synced = bob.sync(since=since, timeout=5000)
        since = synced["next_batch"]
        room = synced.get("rooms", {}).get("join", {}).get(room_id, {})
        seen += [e["content"]["body"] for e in room.get("timeline", {}).get("events", [])
                 if e["type"] == "m.room.message"]  # fmt: skip
    for i in range(3):
        bob.send(room_id, f"b{i}")
    wait_for(lambda: bodies(alice, room_id)[-3:] == ["b0", "b1", "b2"], "Bob's messages on A")
    expected = ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert bodies(alice, room_id) == bodies(bob, room_id) == expected
    # The very same events (IDs and senders) on both sides.
    on_a = [(e["event_id"], e["sender"]) for e in timeline(alice, room_id)]
    assert on_a == [(e["event_id"], e["sender"]) for e in timeline(bob, room_id)]


def test_topic_and_power_levels_changed_on_a_are_seen_and_applied_on_b(servers, user) -> None:
    a, b, _ = servers
    alice, bob = user(a), user(b)
    room_id = alice.create_room(preset="public_chat", room_version="11")
    join_via(bob, room_id, a)
    # Bob may not set the topic yet (state_default 50): his own server refuses it.
    bob.put(f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "mine"}, expect=403)
    alice.put(f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "from A"})
    levels = alice.get(f"/rooms/{q(room_id)}/state/m.room.power_levels/").json
    levels["users"][bob.user_id] = 50
    alice.put(f"/rooms/{q(room_id)}/state/m.room.power_levels/", levels)

    def on_b(event_type: str) -> Any:
        r = bob.get(f"/rooms/{q(room_id)}/state/{event_type}/", expect=None)
        return r.json if r.status == 200 else None

    wait_for(lambda: (on_b("m.room.topic") or {}).get("topic") == "from A", "the topic on B")
    wait_for(
        lambda: (on_b("m.room.power_levels") or {}).get("users", {}).get(bob.user_id) == 50, "levels on B"
    )
    # B applies the new levels: Bob may set the topic now, and A takes it.
    bob.put(f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "from B"})
    wait_for(
        lambda: alice.get(f"/rooms/{q(room_id)}/state/m.room.topic/").json.get("topic") == "from B",
        "Bob's topic on A",
    )


def test_a_redaction_on_a_is_applied_on_b(servers, user) -> None:
    a, b, _ = servers
    alice, bob = user(a), user(b)
    room_id = alice.create_room(preset="public_chat", room_version="11")
    join_via(bob, room_id, a)
    event_id = alice.send(room_id, "regrettable")
    wait_for(lambda: bodies(bob, room_id) == ["regrettable"], "the message on B")
    alice.put(f"/rooms/{q(room_id)}/redact/{q(event_id)}/{secrets.token_hex(4)}", {"reason": "oops"})

    def redacted_on_b() -> bool:
        event = bob.get(f"/rooms/{q(room_id)}/event/{q(event_id)}").json
        return event["content"] == {} and "redacted_because" in event.get("unsigned", {})

    wait_for(redacted_on_b, "the redaction applied on B")
    assert [e["content"] for e in timeline(bob, room_id)] == [{}]


def test_a_kick_on_a_is_seen_on_b_and_a_ban_refuses_the_rejoin(servers, user) -> None:
    a, b, _ = servers
    alice, bob = user(a), user(b)
    room_id = alice.create_room(preset="public_chat", room_version="11")
    join_via(bob, room_id, a)
    since = bob.sync()["next_batch"]
    alice.post(f"/rooms/{q(room_id)}/kick", {"user_id": bob.user_id, "reason": "out"})
    wait_for(lambda: members(alice, room_id).get(bob.user_id) == "leave", "the kick on A")

    def left_on_b() -> bool:
        return room_id in bob.sync(since=since).get("rooms", {}).get("leave", {})

    wait_for(left_on_b, "the kick in Bob's /sync")
    assert bob.get("/joined_rooms").json["joined_rooms"] == []
    # A kick is not a ban: Bob joins again through A, and talks again.
    assert join_via(bob, room_id, a).json == {"room_id": room_id}
    bob.send(room_id, "back")
    wait_for(lambda: bodies(alice, room_id)[-1:] == ["back"], "Bob's message on A after his return")
    alice.post(f"/rooms/{q(room_id)}/ban", {"user_id": bob.user_id, "reason": "enough"})
    wait_for(lambda: members(alice, room_id).get(bob.user_id) == "ban", "the ban on A")
    wait_for(lambda: bob.get("/joined_rooms").json["joined_rooms"] == [], "the ban reaching B")
    refused = join_via(bob, room_id, a, expect=403).json
    assert refused["errcode"] == "M_FORBIDDEN" and a.server_name in refused["error"]
    assert members(alice, room_id)[bob.user_id] == "ban"


def test_a_room_on_three_servers(servers, user) -> None:
    a, b, c = servers
    alice, bob, carol = user(a), user(b), user(c)
    room_id = alice.create_room(preset="public_chat", room_version="11")
    join_via(bob, room_id, a)
    join_via(carol, room_id, a)
    # Carol joined through A; A relays her join to B, so B knows C is in the room. (C does
    # not send it: to C the join is the resident's answer, not an event of its own.)
    wait_for(lambda: members(bob, room_id).get(carol.user_id) == "join", "Carol's join on B")
    carols_join = next(
        e["event_id"] for e in bob.get(f"/rooms/{q(room_id)}/members").json["chunk"]
        if e["state_key"] == carol.user_id
    )  # fmt: skip
    # B got it in a transaction of A's.
    assert b.query(
        "SELECT origin FROM federation_received_txns WHERE response::jsonb -> 'pdus' ? %s", (carols_join,)
    ) == [(a.server_name,)]
    alice.send(room_id, "from A")
    wait_for(lambda: bodies(carol, room_id) == ["from A"], "A's message on C")
    wait_for(lambda: bodies(bob, room_id) == ["from A"], "A's message on B")
    # B sends to C itself (C is in B's view of the room).
    bob.send(room_id, "from B")
    wait_for(lambda: bodies(carol, room_id)[-1:] == ["from B"], "B's message on C")
    # C stores the transaction before it answers: B records its success once the 200 is back.
    wait_for(
        lambda: b.query(
            "SELECT 1 FROM federation_destinations WHERE server_name = %s AND last_success_ts IS NOT NULL",
            (c.server_name,),
        ),
        "B delivered to C itself",
    )
    carol.send(room_id, "from C")
    expected = ["from A", "from B", "from C"]
    for client in (alice, bob, carol):

        def has_all(client: MatrixClient = client) -> bool:
            return bodies(client, room_id) == expected

        wait_for(has_all, f"all messages on {client.user_id}")
    ids = [e["event_id"] for e in timeline(alice, room_id)]
    assert [e["event_id"] for e in timeline(bob, room_id)] == ids
    assert [e["event_id"] for e in timeline(carol, room_id)] == ids
    joined = {alice.user_id: "join", bob.user_id: "join", carol.user_id: "join"}
    for client in (alice, bob, carol):
        assert members(client, room_id) == joined

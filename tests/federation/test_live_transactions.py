"""Two Dagma processes over TLS sharing a room: the outbox, the sender and ``/send`` end to end.

Both are ``serve all`` without a broker, so each sends from its in-process runner.
The room is shared by a real join (B's user ``POST /join`` with ``server_name`` A:
make_join/send_join); everything after that goes through A's and B's outboxes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer, advance_clock
from tests.support.live import wait_for as _wait_for

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    root = tmp_path_factory.mktemp("fedtx")
    ca = TestCA(root / "ca")
    made: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            cert = ca.issue("localhost", "127.0.0.1", stem=name)
            server = LiveServer(
                root / name,
                federation_tls=(cert.cert_path, cert.key_path),
                redis=False,  # no broker: serve all sends from its in-process runner
                config={"federation_custom_ca_list": [str(ca.cert_path)], "ip_range_whitelist": LOOPBACK},
            )
            made.append(server)
            server.start()
        yield made[0], made[1]
    finally:
        for server in made:
            server.destroy()


def _bodies(server: LiveServer, room_id: str) -> list[str]:
    """Message bodies of the room's timeline on ``server``, in its stream order."""
    rows = server.query(
        "SELECT e.json FROM events e JOIN rooms r ON r.id = e.room_id WHERE r.room_id = %s "
        "AND e.type = 'm.room.message' AND e.stream_ordering IS NOT NULL AND NOT e.soft_failed "
        "ORDER BY e.stream_ordering",
        (room_id,),
    )
    return [json.loads(raw)["content"]["body"] for (raw,) in rows]


def _pending(server: LiveServer, destination: str) -> int:
    [(count,)] = server.query(
        "SELECT count(*) FROM federation_outbox WHERE destination = %s AND dead_letter IS NULL",
        (destination,),
    )
    return int(count)


def _shared_room(a: LiveServer, b: LiveServer, tag: str) -> tuple[MatrixClient, MatrixClient, str]:
    alice = MatrixClient(a.base_url).register(f"alice{tag}")
    bob = MatrixClient(b.base_url).register(f"bob{tag}")
    room_id = alice.create_room(preset="public_chat", room_version="11")
    assert bob.post(f"/join/{q(room_id)}", params={"server_name": a.server_name}).json == {"room_id": room_id}
    return alice, bob, room_id


def test_messages_flow_both_ways_in_order(pair) -> None:
    a, b = pair
    alice, bob, room_id = _shared_room(a, b, "1")
    try:
        sent_a = [alice.send(room_id, f"a{i}") for i in range(3)]
        assert len(set(sent_a)) == 3
        _wait_for(lambda: _bodies(b, room_id) == ["a0", "a1", "a2"], "A's messages on B")
        for i in range(3):
            bob.send(room_id, f"b{i}")
        _wait_for(lambda: _bodies(a, room_id)[-3:] == ["b0", "b1", "b2"], "B's messages on A")
        assert _bodies(a, room_id) == _bodies(b, room_id) == ["a0", "a1", "a2", "b0", "b1", "b2"]
        # A receiver stores a transaction before it answers; the sender deletes the rows once
        # the answer is in: wait for that, not only for the receiver's database.
        _wait_for(
            lambda: _pending(a, b.server_name) == 0 and _pending(b, a.server_name) == 0, "outboxes drained"
        )
    finally:
        alice.close()
        bob.close()


def test_a_stopped_receiver_gets_everything_in_order_once_it_is_back(pair) -> None:
    a, b = pair
    alice, bob, room_id = _shared_room(a, b, "2")
    try:
        b.stop()
        expected = [f"offline {i}" for i in range(20)]
        for body in expected:
            alice.send(room_id, body)  # local sends never wait on the stopped peer
        assert _wait_for(lambda: _pending(a, b.server_name) == 20, "20 queued PDUs")
        b.start()
        # Past any back-off A built up while B was down; the beat re-scan then sends.
        advance_clock(a.base_url, 2 * 3600 * 1000)
        _wait_for(lambda: _bodies(b, room_id) == expected, "the backlog on B")
        [(total, distinct)] = b.query(
            "SELECT count(*), count(DISTINCT e.event_id) FROM events e JOIN rooms r ON r.id = e.room_id "
            "WHERE r.room_id = %s AND e.type = 'm.room.message'",
            (room_id,),
        )
        assert total == distinct == 20
        _wait_for(lambda: _pending(a, b.server_name) == 0, "A's outbox drained")
        # And the way back works after the outage too.
        bob.send(room_id, "back")
        _wait_for(lambda: _bodies(a, room_id)[-1:] == ["back"], "B's message on A")
    finally:
        alice.close()
        bob.close()


def _drop_queued(server: LiveServer, destination: str, bodies: list[str]) -> None:
    """Lose the outbox rows of these messages on ``server`` (as if never sent to ``destination``)."""
    server.query(
        "DELETE FROM federation_outbox o USING events e WHERE o.event_id = e.id AND o.destination = %s "
        "AND e.type = 'm.room.message' AND (e.json::jsonb -> 'content' ->> 'body') = ANY(%s) RETURNING o.id",
        (destination, bodies),
    )


def test_a_receiver_fills_gaps_from_the_origin(pair) -> None:
    a, b = pair
    alice, bob, room_id = _shared_room(a, b, "3")
    try:
        # Only the newest of three events reaches B (as when a peer catches up with its
        # latest event only): B asks A for the missing ones (get_missing_events).
        b.stop()
        for body in ("g0", "g1", "g2"):
            alice.send(room_id, body)
        _wait_for(lambda: _pending(a, b.server_name) == 3, "3 queued PDUs")
        _drop_queued(a, b.server_name, ["g0", "g1"])
        b.start()
        advance_clock(a.base_url, 2 * 3600 * 1000)
        _wait_for(lambda: _bodies(b, room_id) == ["g0", "g1", "g2"], "the gap filled on B")

        # A gap wider than get_missing_events reaches: B takes the state before the newest
        # event from A (state_ids, then the events it lacks) and accepts it across the gap.
        b.stop()
        wide = [f"w{i}" for i in range(30)]
        for body in wide:
            alice.send(room_id, body)
        _wait_for(lambda: _pending(a, b.server_name) == 30, "30 queued PDUs")
        _drop_queued(a, b.server_name, wide[:-1])
        alice.put(f"/rooms/{q(room_id)}/state/m.room.topic", {"topic": "after the gap"})
        b.start()
        advance_clock(a.base_url, 2 * 3600 * 1000)
        _wait_for(lambda: "w29" in _bodies(b, room_id), "the newest event on B")
        assert _wait_for(
            lambda: b.query(
                "SELECT e.json FROM current_state_events c JOIN events e ON e.id = c.event_id "
                "JOIN rooms r ON r.id = c.room_id WHERE r.room_id = %s AND c.type = 'm.room.topic'",
                (room_id,),
            ),
            "the topic on B",
        )
        # B's view of the room is whole again: its own users can still talk to A.
        bob.send(room_id, "still here")
        _wait_for(lambda: _bodies(a, room_id)[-1:] == ["still here"], "B's message on A")
    finally:
        alice.close()
        bob.close()

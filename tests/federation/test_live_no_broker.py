"""Without a broker, ``serve tribune`` only writes outbox rows and ``serve embassy`` sends them.

Issue 10: "Without a broker, ``serve embassy``/``serve all`` send in-process; ``serve
tribune`` only writes rows." Server A runs Tribune and Embassy as two processes on one
PostgreSQL database and no Redis; B is a quick-start ``serve all``. Tribune's requests
never start a sender (no destination state is ever made by it); the Embassy sends what
Tribune queued when it starts (it contacts the peers it has traffic for) and, while it
runs, from its in-process beat re-scan of the outbox.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer, wait_for

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer, LiveServer]]:
    """(A's Tribune, A's Embassy, B), none with a broker."""
    root = tmp_path_factory.mktemp("nobroker")
    ca = TestCA(root / "ca")
    config = {"federation_custom_ca_list": [str(ca.cert_path)], "ip_range_whitelist": LOOPBACK}
    cert_a = ca.issue("localhost", "127.0.0.1", stem="a")
    cert_b = ca.issue("localhost", "127.0.0.1", stem="b")
    tribune = LiveServer(
        root / "a",
        role="tribune",
        redis=False,
        federation_tls=(cert_a.cert_path, cert_a.key_path),
        config=config,
    )
    embassy = tribune.process("embassy")
    b = LiveServer(root / "b", redis=False, federation_tls=(cert_b.cert_path, cert_b.key_path), config=config)
    try:
        tribune.start()
        embassy.start()
        b.start()
        yield tribune, embassy, b
    finally:
        embassy.stop()
        b.destroy()
        tribune.destroy()


def stored_bodies(server: LiveServer, room_id: str) -> list[str]:
    rows = server.query(
        "SELECT e.json FROM events e JOIN rooms r ON r.id = e.room_id WHERE r.room_id = %s "
        "AND e.type = 'm.room.message' AND e.stream_ordering IS NOT NULL ORDER BY e.stream_ordering",
        (room_id,),
    )
    return [json.loads(raw)["content"]["body"] for (raw,) in rows]


def pending(server: LiveServer, destination: str) -> int:
    [(count,)] = server.query(
        "SELECT count(*) FROM federation_outbox WHERE destination = %s AND dead_letter IS NULL",
        (destination,),
    )
    return int(count)


def senders_ran(server: LiveServer, destination: str) -> bool:
    """Whether any sender of ``server`` ever ran for ``destination`` (the first makes its state row)."""
    return bool(server.query("SELECT 1 FROM federation_destinations WHERE server_name = %s", (destination,)))


def test_tribune_only_writes_rows_and_the_embassy_sends_them(servers) -> None:
    tribune, embassy, b = servers
    alice = MatrixClient(tribune.base_url).register("alice")
    bob = MatrixClient(b.base_url).register("bob")
    try:
        room_id = alice.create_room(preset="public_chat", room_version="11")
        # B joins through A's Embassy (make_join/send_join): the join itself needs no outbox.
        assert bob.post(f"/join/{q(room_id)}", params={"server_name": tribune.server_name}).json == {
            "room_id": room_id
        }
        embassy.stop()

        queued = [f"queued {i}" for i in range(5)]
        for body in queued:
            alice.send(room_id, body)
        # Tribune wrote one row per message for B and started no sender (none ever ran for B).
        assert pending(tribune, b.server_name) == len(queued)
        assert not senders_ran(tribune, b.server_name)
        assert stored_bodies(b, room_id) == []

        # The Embassy's start sends them: it contacts the peers it has traffic for.
        embassy.start()
        wait_for(lambda: stored_bodies(b, room_id) == queued, "the queued messages on B, in order")
        wait_for(lambda: pending(tribune, b.server_name) == 0, "A's outbox empty")

        # While the Embassy runs, what Tribune queues goes out with its beat re-scan of the
        # outbox (Tribune cannot nudge another process without a broker).
        alice.send(room_id, "while running")
        wait_for(lambda: stored_bodies(b, room_id) == [*queued, "while running"], "the next message on B")
        # And the way back: B sends to A's Embassy, which Tribune's users read.
        bob.send(room_id, "from B")
        wait_for(lambda: stored_bodies(tribune, room_id)[-1:] == ["from B"], "B's message on A")
        timeline = alice.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 20}).json["chunk"]
        assert [e["content"]["body"] for e in timeline if e["type"] == "m.room.message"][:2] == [
            "from B",
            "while running",
        ]
    finally:
        alice.close()
        bob.close()

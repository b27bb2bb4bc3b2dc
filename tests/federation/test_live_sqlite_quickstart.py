"""The quick start federates: ``serve all`` on SQLite, no broker, shares rooms with a Dagma on
PostgreSQL over TLS.

The embedded default sends from its in-process runner and persists what it receives in
the same process that serves its clients (SQLite, one writer at a time): joins both ways
(make_join/send_join each side), messages both ways in order, and a leave that stops
the traffic to the server that left.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer, wait_for

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    """(the SQLite quick start, a Dagma on PostgreSQL), both ``serve all`` without a broker."""
    root = tmp_path_factory.mktemp("quickstart")
    ca = TestCA(root / "ca")
    config = {"federation_custom_ca_list": [str(ca.cert_path)], "ip_range_whitelist": LOOPBACK}
    made: list[LiveServer] = []
    try:
        for name, database in (("sqlite", "sqlite"), ("pg", "postgres")):
            cert = ca.issue("localhost", "127.0.0.1", stem=name)
            server = LiveServer(
                root / name,
                database=database,
                redis=False,
                federation_tls=(cert.cert_path, cert.key_path),
                config=config,
            )
            made.append(server)
            server.start()
        yield made[0], made[1]
    finally:
        for server in made:
            server.destroy()


def timeline(client: MatrixClient, room_id: str) -> list[dict[str, Any]]:
    """The room's events as ``client``'s server serves them (``/messages``), oldest first."""
    answer = client.get(
        f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 200}, spec="/rooms/{roomId}/messages"
    ).json
    return list(reversed(answer["chunk"]))


def bodies(client: MatrixClient, room_id: str) -> list[str]:
    return [e["content"]["body"] for e in timeline(client, room_id) if e["type"] == "m.room.message"]


def membership(client: MatrixClient, room_id: str, user_id: str) -> str | None:
    r = client.get(f"/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}", expect=None)
    return r.json.get("membership") if r.status == 200 else None


def pending(server: LiveServer, destination: str) -> int:
    """Undelivered outbox rows of ``server`` for ``destination``, as it stored them."""
    sql = "SELECT count(*) FROM federation_outbox WHERE destination = {} AND dead_letter IS NULL"
    if server.database == "postgres":
        [(count,)] = server.query(sql.format("%s"), (destination,))
    else:
        with contextlib.closing(
            sqlite3.connect(f"file:{server.workdir / 'homeserver.db'}?mode=ro", uri=True)
        ) as conn:
            [(count,)] = conn.execute(sql.format("?"), (destination,)).fetchall()
    return int(count)


@pytest.mark.parametrize("host", ["sqlite", "pg"])
def test_a_room_on_either_server_is_shared_both_ways_and_a_leave_stops_the_traffic(pair, host: str) -> None:
    sqlite, pg = pair
    resident, visitor = (sqlite, pg) if host == "sqlite" else (pg, sqlite)
    tag = host
    alice = MatrixClient(resident.base_url).register(f"alice{tag}")
    bob = MatrixClient(visitor.base_url).register(f"bob{tag}")
    try:
        room_id = alice.create_room(preset="public_chat", room_version="11", name=f"on {host}")
        joined = bob.post(f"/join/{q(room_id)}", params={"server_name": resident.server_name})
        assert joined.json == {"room_id": room_id}
        # The join reached the resident server's users.
        wait_for(lambda: membership(alice, room_id, bob.user_id or "") == "join", "bob's join seen by alice")

        expected: list[str] = []
        for i in range(3):
            for who, client in (("alice", alice), ("bob", bob)):
                body = f"{who} {i}"
                client.send(room_id, body)
                expected.append(body)
                # Each message reaches the other server before the next one is sent: both
                # servers then hold one order, the order of the conversation.
                wait_for(
                    lambda: bodies(alice, room_id) == bodies(bob, room_id) == expected, f"{body} on both"
                )
        for client in (alice, bob):
            ids = [e["event_id"] for e in timeline(client, room_id)]
            assert len(ids) == len(set(ids))

        # A burst from each side at once: each side's messages arrive in their order.
        burst_a = [f"burst alice {i}" for i in range(10)]
        burst_b = [f"burst bob {i}" for i in range(10)]
        for body_a, body_b in zip(burst_a, burst_b, strict=True):
            alice.send(room_id, body_a)
            bob.send(room_id, body_b)

        def both_bursts_in_order(client: MatrixClient) -> bool:
            got = bodies(client, room_id)
            return [b for b in got if b.startswith("burst alice")] == burst_a and [
                b for b in got if b.startswith("burst bob")
            ] == burst_b

        for client in (alice, bob):
            wait_for(lambda: both_bursts_in_order(client), "both bursts in order")  # noqa: B023 - waited on at once
            assert len(bodies(client, room_id)) == len(expected) + 20

        # The visitor leaves: the resident server sees it, and sends the room nothing more.
        bob.post(f"/rooms/{q(room_id)}/leave")
        wait_for(
            lambda: membership(alice, room_id, bob.user_id or "") == "leave", "bob's leave seen by alice"
        )
        alice.send(room_id, "after the leave")
        assert bodies(alice, room_id)[-1] == "after the leave"
        # Nothing is queued for the server that left (its last member is gone).
        assert pending(resident, visitor.server_name) == 0
        sync = bob.sync(filter=json.dumps({"room": {"include_leave": True}}))
        assert room_id in sync["rooms"]["leave"]
    finally:
        alice.close()
        bob.close()

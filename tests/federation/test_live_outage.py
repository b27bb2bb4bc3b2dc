"""Dagma's own Embassy and federation workers stopped (a DDoS on the federation port), then back.

Server A runs the production layout on PostgreSQL + Redis: ``serve tribune``, ``serve
embassy`` and a Celery worker on the ``federation`` queue, three processes over one
config and one database. Server B is a quick-start ``serve all`` (no broker). A room is
shared by two users of A and one of B.

Issue 10's promise, checked end to end: while A's Embassy and worker are stopped, A's
local users keep chatting (Tribune only writes outbox rows; no request waits on a remote
server) and B's outbox to A queues; once they are back, A's Embassy contacts the peers it
has traffic for, which resets their back-off towards A, and both backlogs drain in
order, exactly once, into the timelines and into every user's ``/sync``.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from dagcore.federation.sender import LEASE_MS
from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.federation.tcp_proxy import TcpProxy
from tests.support.client import MatrixClient, q
from tests.support.live import CeleryWorker, LiveServer, advance_clock, free_port, wait_for

pytestmark = pytest.mark.live

#: Every message of the test in one /sync answer (the timeline is never "limited").
SYNC_FILTER = json.dumps({"room": {"timeline": {"limit": 100}}})


@dataclass
class SplitServer:
    """A homeserver in the production layout: three processes, one config and database."""

    tribune: LiveServer
    embassy: LiveServer
    worker: CeleryWorker

    @property
    def server_name(self) -> str:
        return self.tribune.server_name


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SplitServer, LiveServer, TcpProxy]]:
    """A in the production layout; B a quick start reached through a proxy that can hold
    B's answers (it passes everything through unless a test holds them)."""
    root = tmp_path_factory.mktemp("outage")
    ca = TestCA(root / "ca")
    config = {"federation_custom_ca_list": [str(ca.cert_path)], "ip_range_whitelist": LOOPBACK}
    cert_a = ca.issue("localhost", "127.0.0.1", stem="a")
    cert_b = ca.issue("localhost", "127.0.0.1", stem="b")
    tribune = LiveServer(
        root / "a", role="tribune", federation_tls=(cert_a.cert_path, cert_a.key_path), config=config
    )
    embassy = tribune.process("embassy")
    a = SplitServer(tribune, embassy, CeleryWorker(tribune, "federation"))
    b = LiveServer(root / "b", federation_tls=(cert_b.cert_path, cert_b.key_path), redis=False, config=config)
    # B listens behind the proxy: its server name keeps the public port, the proxy's.
    assert b.federation_port is not None
    b.write_config()
    b_config = yaml.safe_load(b.config_path.read_text())
    b_config["listeners"][1]["port"] = inner_port = free_port()
    b.config_path.write_text(yaml.safe_dump(b_config))
    proxy = TcpProxy(listen_port=b.federation_port, upstream_port=inner_port)
    try:
        tribune.start()
        embassy.start()
        a.worker.start()
        b.create_database()
        b.migrate()
        b.start()
        yield a, b, proxy
    finally:
        proxy.close()
        a.worker.stop()
        embassy.stop()
        b.destroy()
        tribune.destroy()


def stored_bodies(server: LiveServer, room_id: str) -> list[str]:
    """Message bodies of the room's timeline as ``server`` stored it, in its stream order."""
    rows = server.query(
        "SELECT e.json FROM events e JOIN rooms r ON r.id = e.room_id WHERE r.room_id = %s "
        "AND e.type = 'm.room.message' AND e.stream_ordering IS NOT NULL AND NOT e.soft_failed "
        "ORDER BY e.stream_ordering",
        (room_id,),
    )
    return [json.loads(raw)["content"]["body"] for (raw,) in rows]


def stored_copies(server: LiveServer, room_id: str) -> Counter[str]:
    """How many rows each message event has on ``server`` (1 each: nothing applied twice)."""
    rows = server.query(
        "SELECT e.event_id FROM events e JOIN rooms r ON r.id = e.room_id "
        "WHERE r.room_id = %s AND e.type = 'm.room.message'",
        (room_id,),
    )
    return Counter(event_id for (event_id,) in rows)


def destination(server: LiveServer, name: str) -> dict[str, Any]:
    """What ``server`` knows of sending to ``name``: back-off, lease, undelivered rows."""
    [(pending,)] = server.query(
        "SELECT count(*) FROM federation_outbox WHERE destination = %s AND dead_letter IS NULL", (name,)
    )
    rows = server.query(
        "SELECT failures, next_attempt_ts, lease_owner FROM federation_destinations WHERE server_name = %s",
        (name,),
    )
    failures, next_attempt_ts, lease_owner = rows[0] if rows else (0, 0, "")
    return {
        "failures": failures,
        "next_attempt_ts": next_attempt_ts,
        "leased": bool(lease_owner),
        "pending": pending,
    }


class SyncedTimeline:
    """One user's view of a room through incremental ``/sync``, from a position on: every
    message event each answer delivered, duplicates included (so they can be counted)."""

    def __init__(self, client: MatrixClient, room_id: str) -> None:
        self.client = client
        self.room_id = room_id
        self.since = client.sync(filter=SYNC_FILTER)["next_batch"]
        self.events: list[dict[str, Any]] = []

    def bodies(self) -> list[str]:
        return [e["content"]["body"] for e in self.events]

    def poll_until(self, done: Callable[[list[str]], bool], what: str, timeout: float = 60.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not done(self.bodies()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}; /sync gave {self.bodies()}"
            answer = self.client.sync(since=self.since, timeout=1000, filter=SYNC_FILTER)
            room = answer.get("rooms", {}).get("join", {}).get(self.room_id)
            if room is not None:
                assert not room["timeline"].get("limited"), "a gap in the timeline"
                self.events += [e for e in room["timeline"]["events"] if e["type"] == "m.room.message"]
            self.since = answer["next_batch"]
        return self.bodies()

    def assert_each_once(self) -> None:
        ids = Counter(e["event_id"] for e in self.events)
        assert [i for i, n in ids.items() if n > 1] == [], "an event delivered twice by /sync"


def from_server(bodies: list[str], prefix: str) -> list[str]:
    return [b for b in bodies if b.startswith(prefix)]


def test_local_users_keep_chatting_and_both_backlogs_drain_in_order_once_the_embassy_is_back(servers) -> None:
    a, b, _ = servers
    alice = MatrixClient(a.tribune.base_url).register("alice")
    carol = MatrixClient(a.tribune.base_url).register("carol")
    bob = MatrixClient(b.base_url).register("bob")
    try:
        room_id = alice.create_room(preset="public_chat", room_version="11")
        carol.join(room_id)
        assert bob.post(f"/join/{q(room_id)}", params={"server_name": a.server_name}).json == {
            "room_id": room_id
        }
        # The room works across the servers before the outage.
        alice.send(room_id, "A before")
        wait_for(lambda: stored_bodies(b, room_id) == ["A before"], "A's message on B")
        bob.send(room_id, "B before")
        wait_for(lambda: stored_bodies(a.tribune, room_id) == ["A before", "B before"], "B's message on A")
        views = {
            who: SyncedTimeline(c, room_id) for who, c in (("alice", alice), ("carol", carol), ("bob", bob))
        }

        # The federation side of A goes down (as under a DDoS): Embassy and its worker.
        a.embassy.stop()
        a.worker.stop()

        # A's users chat on: each send answers (Tribune writes the event and its outbox row,
        # nothing more), and /sync delivers it to the other local user at once.
        from_a: list[str] = []
        for i in range(4):
            for who, sender in (("alice", alice), ("carol", carol)):
                body = f"A {who} {i}"
                sender.send(room_id, body)
                from_a.append(body)
                other = views["carol" if who == "alice" else "alice"]
                other.poll_until(lambda got: from_a[-1] in got, f"{body} in the other local user's /sync")
        assert wait_for(lambda: destination(a.tribune, b.server_name)["pending"] == len(from_a), "A's queue")

        # B's user talks too, more than one transaction holds (50 PDUs): B's sender finds
        # A's federation port closed and backs off.
        from_b = [f"B bob {i}" for i in range(60)]
        for body in from_b:
            bob.send(room_id, body)
        views["bob"].poll_until(lambda got: from_b[-1] in got, "bob's own messages in his /sync")
        wait_for(
            lambda: (
                (d := destination(b, a.server_name))["failures"] >= 1
                and not d["leased"]
                and d["pending"] == len(from_b)
            ),
            "B backing off from A with its messages queued",
        )
        # As after hours of outage: B would not try A again for an hour on its own. Only A
        # contacting B once it is back can bring B's backlog over in this test's time.
        b.query(
            "UPDATE federation_destinations SET failures = 12, "
            "next_attempt_ts = (extract(epoch FROM now()) * 1000)::bigint + 3600000 "
            "WHERE server_name = %s RETURNING failures",
            (a.server_name,),
        )
        assert stored_bodies(b, room_id) == ["A before", "B before", *from_b]
        assert stored_bodies(a.tribune, room_id) == ["A before", "B before", *from_a]

        # The nudges Tribune queued for the worker are lost (a broker restarted without
        # persistence): only the outbox rows say what A owes B, and no beat runs here.
        a.worker.purge()

        # Back: the Embassy first. On start it contacts the peers it has traffic for.
        log_start = a.embassy.log_path.stat().st_size
        a.embassy.start()
        wait_for(
            lambda: (
                "contacting 1 peers with pending traffic"
                in a.embassy.log_path.read_bytes()[log_start:].decode()
            ),
            "the Embassy contacting B on start",
        )
        a.worker.start()

        wait_for(
            lambda: from_server(stored_bodies(b, room_id), "A ") == ["A before", *from_a], "A's backlog on B"
        )
        wait_for(
            lambda: from_server(stored_bodies(a.tribune, room_id), "B ") == ["B before", *from_b],
            "B's backlog on A",
        )
        # B tried A again because A contacted it (its hour of back-off was reset), and both
        # outboxes are empty.
        assert destination(b, a.server_name)["failures"] == 0
        wait_for(lambda: destination(a.tribune, b.server_name)["pending"] == 0, "A's outbox empty")
        wait_for(lambda: destination(b, a.server_name)["pending"] == 0, "B's outbox empty")
        for server in (a.tribune, b):
            copies = stored_copies(server, room_id)
            assert len(copies) == 2 + len(from_a) + len(from_b) and set(copies.values()) == {1}

        # Every user's /sync delivers each message once, each server's messages in their order.
        for who, view in views.items():
            got = view.poll_until(
                lambda got: len(got) >= len(from_a) + len(from_b), f"everything in {who}'s /sync"
            )
            view.assert_each_once()
            assert from_server(got, "A ") == from_a, who
            assert from_server(got, "B ") == from_b, who
            assert len(got) == len(from_a) + len(from_b), who
    finally:
        for client in (alice, carol, bob):
            client.close()


def received_txns(server: LiveServer, origin: str) -> list[str]:
    """The transaction IDs ``server`` recorded from ``origin`` (one row per (origin, txnId))."""
    return [
        txn_id
        for (txn_id,) in server.query(
            "SELECT txn_id FROM federation_received_txns WHERE origin = %s ORDER BY received_ts, txn_id",
            (origin,),
        )
    ]


def in_flight(server: LiveServer, name: str) -> tuple[str, str]:
    """(lease owner, transaction in flight) of ``server``'s sender to ``name``."""
    rows = server.query(
        "SELECT lease_owner, txn_id FROM federation_destinations WHERE server_name = %s", (name,)
    )
    return (str(rows[0][0]), str(rows[0][1])) if rows else ("", "")


def sent_pdus_per_run(worker: CeleryWorker) -> list[int]:
    """What each finished sender run of the worker returned (the PDUs it delivered)."""
    return [
        int(n)
        for n in re.findall(
            r"Task embassy\.tasks\.send_to_destination\[[^]]+\] succeeded in [^:]+: (\d+)", worker.log_text()
        )
    ]


def test_a_worker_killed_mid_transaction_loses_nothing_and_its_transaction_is_resent_as_is(servers) -> None:
    a, b, proxy = servers
    alice = MatrixClient(a.tribune.base_url).register("alice-kill")
    bob = MatrixClient(b.base_url).register("bob-kill")
    try:
        room_id = alice.create_room(preset="public_chat", room_version="11")
        assert bob.post(f"/join/{q(room_id)}", params={"server_name": a.server_name}).json == {
            "room_id": room_id
        }
        alice.send(room_id, "k before")
        wait_for(lambda: stored_bodies(b, room_id) == ["k before"], "the first message on B")
        wait_for(lambda: in_flight(a.tribune, b.server_name) == ("", ""), "A's sender idle")
        bob_view = SyncedTimeline(bob, room_id)

        # B handles the next transaction, but its answer never reaches A's worker.
        proxy.hold()
        alice.send(room_id, "k0")
        wait_for(lambda: "k0" in stored_bodies(b, room_id), "k0 applied on B")
        lease_owner, txn_id = wait_for(
            lambda: (f := in_flight(a.tribune, b.server_name))[0] and f[1] and f,
            "the lease and the txn in flight",
        )
        assert txn_id in received_txns(b, a.server_name)
        recorded = len(received_txns(b, a.server_name))
        # More traffic queues behind the transaction in flight (one per destination).
        alice.send(room_id, "k1")
        alice.send(room_id, "k2")
        wait_for(lambda: destination(a.tribune, b.server_name)["pending"] == 3, "k0-k2 undelivered on A")

        a.worker.kill()  # kill -9, mid-transaction
        proxy.release()
        # The dead worker's lease still stands: a new worker that picks up the queued nudges
        # leaves the destination alone (no second transaction in flight).
        a.worker = CeleryWorker(a.tribune, "federation", beat=True, name="worker-after-kill").start()
        wait_for(lambda: sent_pdus_per_run(a.worker), "the new worker running a queued nudge")
        assert sum(sent_pdus_per_run(a.worker)) == 0
        assert in_flight(a.tribune, b.server_name) == (lease_owner, txn_id)
        assert received_txns(b, a.server_name)[-1] == txn_id

        # Past the lease, the beat re-scan hands the destination to the new worker, which sends
        # the same transaction (same txnId, same PDUs) first: B answers it from its record.
        advance_clock(a.tribune.base_url, LEASE_MS + 1000)
        wait_for(
            lambda: destination(a.tribune, b.server_name)["pending"] == 0, "A's outbox drained", timeout=40
        )
        # The sender lets go of its lease once it has looked for more work (it re-checks the
        # outbox after releasing, so a row written meanwhile is not stranded).
        wait_for(lambda: in_flight(a.tribune, b.server_name) == ("", ""), "A's sender idle again")
        # k0 again (as txn_id), then k1 and k2. Celery logs a run's result after the run has
        # released the lease: wait for the line, not only for the database.
        wait_for(lambda: sum(sent_pdus_per_run(a.worker)) == 3, "the new worker's runs logged")
        after = received_txns(b, a.server_name)
        # One new transaction (k1, k2): the resent one was not recorded twice, nor renamed.
        assert len(after) == recorded + 1 and after.count(txn_id) == 1

        alice.send(room_id, "k3")
        expected = ["k before", "k0", "k1", "k2", "k3"]
        wait_for(lambda: stored_bodies(b, room_id) == expected, "everything on B, in order")
        assert set(stored_copies(b, room_id).values()) == {1}
        assert bob_view.poll_until(lambda got: "k3" in got, "k3 in bob's /sync") == expected[1:]
        bob_view.assert_each_once()
    finally:
        proxy.release()
        alice.close()
        bob.close()

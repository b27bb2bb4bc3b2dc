"""Two Tribune processes on one database and one Redis: a change committed by one process
wakes a ``/sync`` long-poll held by the other (through the channel layer), within milliseconds."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api.test_sync import uid
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer, wait_for_waiters
from tests.support.spec import validate_response

pytestmark = pytest.mark.live


def second_process(first: LiveServer, workdir: Path) -> LiveServer:
    """Another process of the same homeserver: the same config file (keys, database, Redis),
    only its own listening port."""
    other = LiveServer(workdir, db_name=first.db_name)
    config = yaml.safe_load(first.config_path.read_text())
    config["listeners"][0]["port"] = other.port
    config["public_baseurl"] = other.base_url + "/"
    workdir.mkdir(parents=True, exist_ok=True)
    other.config_path.write_text(yaml.safe_dump(config))
    return other.start()


@pytest.fixture
def two_processes(tmp_path: Path):
    a = LiveServer(tmp_path / "a").start()
    b = None
    try:
        b = second_process(a, tmp_path / "b")
        yield a, b
    finally:
        if b is not None:
            b.stop()
        a.destroy()


def poll_in_background(client: MatrixClient, since: str, out: dict[str, Any]) -> threading.Thread:
    def poll() -> None:
        r = client.get("/sync", params={"since": since, "timeout": 20000})
        out["returned_at"] = time.monotonic()  # before validating (the first validation loads the schemas)
        validate_response("GET", "/sync", r.status, r.json)
        out["body"] = r.json

    thread = threading.Thread(target=poll)
    thread.start()
    return thread


def test_message_sent_through_one_process_wakes_a_sync_held_by_another(two_processes) -> None:
    a, b = two_processes
    alice = MatrixClient(a.base_url).register()
    room = alice.create_room()
    alice_via_b = MatrixClient(b.base_url, alice.access_token)
    token = alice_via_b.get("/sync", params={"timeout": 0}).json["next_batch"]
    latencies: list[float] = []
    after_commit: list[float] = []
    for i in range(5):
        out: dict[str, Any] = {}
        thread = poll_in_background(alice_via_b, token, out)
        wait_for_waiters(b.base_url, uid(alice))  # the long-poll is waiting in process B
        sent_at = time.monotonic()
        event_id = alice.send(room, f"through A #{i}")  # process A commits, then answers
        sent_done = time.monotonic()
        thread.join(10)
        assert not thread.is_alive(), "process B's long-poll was not woken"
        latencies.append(out["returned_at"] - sent_at)
        after_commit.append(out["returned_at"] - sent_done)
        events = out["body"]["rooms"]["join"][room]["timeline"]["events"]
        assert [e["event_id"] for e in events] == [event_id]
        token = out["body"]["next_batch"]
    print(
        f"\ncross-process /sync wake-up, send through A -> sync answered by B: "
        f"median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
        f"counted from A's answer to /send (commit done): median {statistics.median(after_commit) * 1000:.1f} ms, "
        f"max {max(after_commit) * 1000:.1f} ms"
    )
    assert max(latencies) < 1.0


def test_ephemeral_changes_cross_processes_too(two_processes) -> None:
    a, b = two_processes
    alice = MatrixClient(a.base_url).register()
    bob = MatrixClient(a.base_url).register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    bob_via_b = MatrixClient(b.base_url, bob.access_token)
    token = bob_via_b.get("/sync", params={"timeout": 0}).json["next_batch"]
    out: dict[str, Any] = {}
    thread = poll_in_background(bob_via_b, token, out)
    wait_for_waiters(b.base_url, uid(bob))  # the long-poll is waiting in process B
    sent_at = time.monotonic()
    alice.put(f"/rooms/{q(room)}/typing/{q(uid(alice))}", {"typing": True, "timeout": 10000})
    thread.join(10)
    assert not thread.is_alive(), "process B's long-poll was not woken"
    assert out["returned_at"] - sent_at < 1.0
    ephemeral = out["body"]["rooms"]["join"][room]["ephemeral"]["events"]
    assert {"type": "m.typing", "content": {"user_ids": [alice.user_id]}} in ephemeral

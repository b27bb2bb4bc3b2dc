"""Backfill between two Dagma processes over TLS: Bob on B joins Alice's room on A after she
sent 30 messages; B's ``/messages`` walking back asks A (``GET /backfill``) and shows the
history as A does, once, and B's ``/sync`` does not hand it out as news.

Both servers are ``serve all`` without a broker, named ``localhost:<federation port>`` and
trusting the suite's test CA; what a server holds is read through its own client API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer

pytestmark = pytest.mark.live

HISTORY = 30


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    root = tmp_path_factory.mktemp("fedbackfill")
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


def walk_back(client: MatrixClient, room_id: str, *, limit: int) -> list[dict[str, Any]]:
    """Every event ``/messages`` gives walking back from the room's end, page by page, oldest first."""
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"dir": "b", "limit": limit}
    for _ in range(200):
        page = client.get(f"/rooms/{q(room_id)}/messages", params=params).json
        events += page["chunk"]
        if "end" not in page:
            return list(reversed(events))
        params["from"] = page["end"]
    raise AssertionError("the walk did not end")


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


@pytest.mark.parametrize("version", ["11", "12"])
def test_the_history_before_a_join_is_backfilled_from_the_resident_in_its_order(pair, version) -> None:
    a, b = pair
    alice = MatrixClient(a.base_url, timeout=120).register(f"alice{version}")
    bob = MatrixClient(b.base_url, timeout=120).register(f"bob{version}")
    room_id = alice.create_room(preset="public_chat", room_version=version)
    for i in range(HISTORY):
        alice.send(room_id, f"h{i}")
    assert bob.post(f"/join/{q(room_id)}", params={"server_name": a.server_name}).json == {"room_id": room_id}
    since = bob.sync()["next_batch"]

    on_b = walk_back(bob, room_id, limit=7)
    on_a = walk_back(alice, room_id, limit=50)
    assert bodies(on_b) == [f"h{i}" for i in range(HISTORY)]
    # The same events in the same order as on A, the room's creation included, no duplicates.
    ids = [e["event_id"] for e in on_b]
    assert ids == [e["event_id"] for e in on_a] and len(set(ids)) == len(ids)
    assert on_b[0]["type"] == "m.room.create"
    # A second walk finds it all here, once.
    assert [e["event_id"] for e in walk_back(bob, room_id, limit=11)] == ids

    # Not news to /sync: an incremental sync from before the walk has no timeline for the room.
    synced = bob.sync(since=since, timeout=0)
    room = synced.get("rooms", {}).get("join", {}).get(room_id, {})
    assert room.get("timeline", {}).get("events", []) == []
    # And life goes on: A's next message reaches B's /sync as news, after the history.
    alice.send(room_id, "after")
    deadline = time.monotonic() + 45
    news: list[str] = []
    while "after" not in news:
        assert time.monotonic() < deadline, f"A's message on B: {news}"
        synced = bob.sync(since=since, timeout=5000)
        since = synced["next_batch"]
        joined = synced.get("rooms", {}).get("join", {}).get(room_id, {})
        news += bodies(joined.get("timeline", {}).get("events", []))
    assert news == ["after"]
    assert bodies(walk_back(bob, room_id, limit=100)) == [*(f"h{i}" for i in range(HISTORY)), "after"]


def test_with_the_resident_down_messages_answers_in_bounded_time_with_what_b_holds(pair) -> None:
    a, b = pair
    alice = MatrixClient(a.base_url, timeout=120).register("alicedown")
    bob = MatrixClient(b.base_url, timeout=120).register("bobdown")
    room_id = alice.create_room(preset="public_chat", room_version="11")
    for i in range(5):
        alice.send(room_id, f"d{i}")
    assert bob.post(f"/join/{q(room_id)}", params={"server_name": a.server_name}).json == {"room_id": room_id}
    a.stop()
    try:
        started = time.monotonic()
        page = bob.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 10}).json
        assert time.monotonic() - started < 15  # the backfill budget (10 s), not a hang
        assert bodies(page["chunk"]) == []
        assert page["chunk"][0]["type"] == "m.room.member" and page["chunk"][0]["state_key"] == bob.user_id
    finally:
        a.start()

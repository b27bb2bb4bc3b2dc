"""Backfill between Dagma and a real Synapse (installed from PyPI by ``tests.support.synapse``),
both ways, over TLS: a user joining a room with 30 earlier messages sees them through
``/messages`` in the resident's order (spec: server-server API "Backfilling and retrieving
missing events")."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import federating_dagma, running
from tests.support import synapse as synapse_support
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer
from tests.support.synapse import SynapsePeer, people_of

pytestmark = pytest.mark.live

synapse_venv = synapse_support.synapse_venv
synapse_peer = synapse_support.synapse_peer

HISTORY = 30


@pytest.fixture(scope="module")
def dagma(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = federating_dagma(
        test_ca, tmp_path_factory.mktemp("dagma-syn-backfill") / "d", stem="dagma-backfill", redis=False
    )
    with running(server):
        yield server


@pytest.fixture
def people(dagma: LiveServer, synapse_peer: SynapsePeer) -> Iterator[Callable[[str], MatrixClient]]:
    """``"dagma"`` or ``"synapse"`` -> a fresh user of that server."""
    with people_of(dagma, synapse_peer) as factory:
        yield factory


def walk_back(client: MatrixClient, room_id: str, *, limit: int) -> list[dict[str, Any]]:
    """Every event ``/messages`` gives walking back from the room's end, page by page, oldest first."""
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"dir": "b", "limit": limit}
    for _ in range(200):
        page = client.get(f"/rooms/{q(room_id)}/messages", params=params).json
        events += page["chunk"]
        if "end" not in page or not page["chunk"]:
            return list(reversed(events))
        params["from"] = page["end"]
    raise AssertionError("the walk did not end")


def messages(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["event_id"], e["content"]["body"]) for e in events if e["type"] == "m.room.message"]


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_a_dagma_user_joining_a_synapse_room_sees_its_history_in_synapses_order(
    dagma: LiveServer, synapse_peer: SynapsePeer, people, version: str
) -> None:
    sam, dan = people("synapse"), people("dagma")
    room_id = sam.create_room(preset="public_chat", room_version=version)
    for i in range(HISTORY):
        sam.send(room_id, f"s{i}")
    assert dan.post(f"/join/{q(room_id)}", params={"via": synapse_peer.server_name}).json == {
        "room_id": room_id
    }
    on_synapse = messages(walk_back(sam, room_id, limit=50))
    assert [b for _, b in on_synapse] == [f"s{i}" for i in range(HISTORY)]
    walked = walk_back(dan, room_id, limit=8)
    assert messages(walked) == on_synapse
    ids = [e["event_id"] for e in walked]
    assert len(ids) == len(set(ids)) and walked[0]["type"] == "m.room.create"
    assert [e["event_id"] for e in walk_back(dan, room_id, limit=100)] == ids


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_a_synapse_user_joining_a_dagma_room_sees_its_history_backfilled_from_dagma(
    dagma: LiveServer, synapse_peer: SynapsePeer, people, version: str
) -> None:
    dan, sam = people("dagma"), people("synapse")
    room_id = dan.create_room(preset="public_chat", room_version=version)
    for i in range(HISTORY):
        dan.send(room_id, f"d{i}")
    assert sam.post(f"/join/{q(room_id)}", params={"via": dagma.server_name}).json["room_id"] == room_id
    on_dagma = messages(walk_back(dan, room_id, limit=50))
    assert [b for _, b in on_dagma] == [f"d{i}" for i in range(HISTORY)]
    # Synapse backfills from Dagma as its user pages back (it may need several walks).
    deadline = time.monotonic() + 60
    seen = messages(walk_back(sam, room_id, limit=10))
    while seen != on_dagma:
        assert time.monotonic() < deadline, f"Dagma's history on Synapse: {[b for _, b in seen]}"
        time.sleep(0.2)  # polling Synapse's /messages, with a deadline
        seen = messages(walk_back(sam, room_id, limit=10))
    # Synapse stored them as backfilled history (negative stream orderings), not as news.
    [(backfilled,)] = synapse_peer.query(
        "SELECT count(*) FROM events WHERE room_id = %s AND type = 'm.room.message' AND stream_ordering < 0",
        (room_id,),
    )
    assert backfilled == HISTORY

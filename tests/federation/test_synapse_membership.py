"""Knocks and restricted joins between Dagma and a real Synapse (installed from PyPI by
``tests.support.synapse``), both ways, over TLS, through each server's client API.

Spec: client-server API "Knocking on rooms" and "Restricting room membership", server-server
API "Knocking upon a room" (make_knock / send_knock) and "Restricted rooms" (the resident
signs the join naming ``join_authorised_via_users_server``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import federating_dagma, running
from tests.support import synapse as synapse_support
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer, wait_for
from tests.support.synapse import SynapsePeer, people_of

pytestmark = pytest.mark.live

synapse_venv = synapse_support.synapse_venv
synapse_peer = synapse_support.synapse_peer


@pytest.fixture(scope="module")
def dagma(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = federating_dagma(
        test_ca, tmp_path_factory.mktemp("dagma-syn-membership") / "d", stem="dagma-membership", redis=False
    )
    with running(server):
        yield server


@pytest.fixture
def people(dagma: LiveServer, synapse_peer: SynapsePeer) -> Iterator[Callable[[str], MatrixClient]]:
    """``"dagma"`` or ``"synapse"`` -> a fresh user of that server."""
    with people_of(dagma, synapse_peer) as factory:
        yield factory


class SyncFeed:
    """A client's incremental ``/sync``: Synapse answers a repeated identical (initial) sync from
    a cache for minutes, so news is waited for with ``since`` tokens."""

    def __init__(self, client: MatrixClient) -> None:
        self.client = client
        self.since: str | None = None

    def wait_for_room(self, section: str, room_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            synced = self.client.sync(since=self.since, timeout=2000 if self.since else 0)
            self.since = synced["next_batch"]
            found = synced.get("rooms", {}).get(section, {}).get(room_id)
            if found:
                return dict(found)
            assert time.monotonic() < deadline, f"timed out waiting for {room_id} in {section}"


def membership(client: MatrixClient, room_id: str, user_id: str | None) -> str | None:
    """``user_id``'s membership in the room as the client's own server holds it."""
    chunk = client.get(f"/rooms/{q(room_id)}/members", expect=None)
    if chunk.status != 200:
        return None
    return {e["state_key"]: e["content"]["membership"] for e in chunk.json["chunk"]}.get(str(user_id))


def knock_room(owner: MatrixClient, version: str) -> str:
    room_id = owner.create_room(preset="private_chat", room_version=version, name="Door")
    owner.put(f"/rooms/{q(room_id)}/state/m.room.join_rules/", {"join_rule": "knock"})
    return room_id


def restricted_room(owner: MatrixClient, version: str, allowed: str) -> str:
    return owner.create_room(
        preset="private_chat",
        room_version=version,
        initial_state=[
            {
                "type": "m.room.join_rules",
                "state_key": "",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": allowed}],
                },
            }
        ],
    )


# --------------------------------------------------------------------------- knocking


@pytest.mark.parametrize("version", ["10", "11"])
def test_a_synapse_user_knocks_on_a_dagma_room_is_invited_and_joins(
    dagma: LiveServer, synapse_peer: SynapsePeer, people, version: str
) -> None:
    dan, sam = people("dagma"), people("synapse")
    room_id = knock_room(dan, version)
    answer = sam.post(f"/knock/{q(room_id)}", {"reason": "let me in"}, params={"via": dagma.server_name})
    assert answer.json == {"room_id": room_id}
    assert membership(dan, room_id, sam.user_id) == "knock"
    feed = SyncFeed(sam)
    knocked = feed.wait_for_room("knock", room_id)
    assert any(
        e["type"] == "m.room.join_rules" and e["content"]["join_rule"] == "knock"
        for e in knocked["knock_state"]["events"]
    )
    dan.post(f"/rooms/{q(room_id)}/invite", {"user_id": sam.user_id})
    feed.wait_for_room("invite", room_id)
    assert sam.post(f"/join/{q(room_id)}", params={"via": dagma.server_name}).json["room_id"] == room_id
    assert membership(dan, room_id, sam.user_id) == "join"
    assert membership(sam, room_id, sam.user_id) == "join"


@pytest.mark.parametrize("version", ["10", "11"])
def test_a_dagma_user_knocks_on_a_synapse_room_is_invited_and_joins(
    dagma: LiveServer, synapse_peer: SynapsePeer, people, version: str
) -> None:
    sam, dan = people("synapse"), people("dagma")
    room_id = knock_room(sam, version)
    answer = dan.post(
        f"/knock/{q(room_id)}", {"reason": "let me in"}, params={"via": synapse_peer.server_name}
    )
    assert answer.json == {"room_id": room_id}
    assert membership(sam, room_id, dan.user_id) == "knock"
    knocked = dan.sync()["rooms"]["knock"][room_id]["knock_state"]["events"]
    assert any(e["type"] == "m.room.join_rules" and e["content"]["join_rule"] == "knock" for e in knocked)
    sam.post(f"/rooms/{q(room_id)}/invite", {"user_id": dan.user_id})
    SyncFeed(dan).wait_for_room("invite", room_id)
    assert dan.post(f"/join/{q(room_id)}").json == {"room_id": room_id}  # through the inviter's server
    wait_for(lambda: membership(sam, room_id, dan.user_id) == "join", "Dan's join on Synapse")
    assert membership(dan, room_id, dan.user_id) == "join"


# --------------------------------------------------------------------------- restricted joins


@pytest.mark.parametrize("version", ["10", "11"])
def test_a_synapse_user_in_the_allowed_room_joins_a_restricted_dagma_room(
    dagma: LiveServer, synapse_peer: SynapsePeer, people, version: str
) -> None:
    dan, sam = people("dagma"), people("synapse")
    space = dan.create_room(preset="public_chat", room_version=version)
    room_id = restricted_room(dan, version, space)
    # Not in the allowed room yet: Dagma refuses the join.
    sam.post(f"/join/{q(room_id)}", params={"via": dagma.server_name}, expect=403)
    assert sam.post(f"/join/{q(space)}", params={"via": dagma.server_name}).json["room_id"] == space
    assert sam.post(f"/join/{q(room_id)}", params={"via": dagma.server_name}).json["room_id"] == room_id
    member = sam.get(f"/rooms/{q(room_id)}/state/m.room.member/{q(str(sam.user_id))}").json
    assert member["join_authorised_via_users_server"] == dan.user_id
    assert membership(dan, room_id, sam.user_id) == "join"


@pytest.mark.parametrize("version", ["10", "11"])
def test_a_dagma_user_in_the_allowed_room_joins_a_restricted_synapse_room(
    dagma: LiveServer, synapse_peer: SynapsePeer, people, version: str
) -> None:
    sam, dan = people("synapse"), people("dagma")
    space = sam.create_room(preset="public_chat", room_version=version)
    room_id = restricted_room(sam, version, space)
    refused = dan.post(f"/join/{q(room_id)}", params={"via": synapse_peer.server_name}, expect=403).json
    assert refused["errcode"] == "M_FORBIDDEN"
    assert dan.post(f"/join/{q(space)}", params={"via": synapse_peer.server_name}).json == {"room_id": space}
    assert dan.post(f"/join/{q(room_id)}", params={"via": synapse_peer.server_name}).json == {
        "room_id": room_id
    }
    # Synapse signed the join on behalf of its user who may invite.
    member = dan.get(f"/rooms/{q(room_id)}/state/m.room.member/{q(str(dan.user_id))}").json
    assert member["join_authorised_via_users_server"] == sam.user_id
    wait_for(lambda: membership(sam, room_id, dan.user_id) == "join", "Dan's join on Synapse")

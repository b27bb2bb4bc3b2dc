"""Typing, read receipts and presence between Dagma and a real Synapse, both ways (issue 11;
spec server-server API "Typing Notifications", "Receipts" and "Presence"): a Synapse user joins
a Dagma room, and each side's typing notice, receipt and presence show in the other side's /sync."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import federating_dagma, running
from tests.federation.test_live_ephemeral import _presence, _receipt, _typing, _wait_sync
from tests.support import synapse as synapse_support
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer
from tests.support.synapse import SynapsePeer

pytestmark = pytest.mark.live

synapse_venv = synapse_support.synapse_venv
synapse_peer = synapse_support.synapse_peer


@pytest.fixture(scope="module")
def dagma(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = federating_dagma(
        test_ca, tmp_path_factory.mktemp("dagma-syn-eph") / "d", stem="dagma-eph", redis=False
    )
    with running(server):
        yield server


def _synapse_client(peer: SynapsePeer, localpart: str) -> MatrixClient:
    registered: dict[str, Any] = peer.register(localpart)
    client = MatrixClient(peer.base_url, registered["access_token"], timeout=120)
    client.user_id = registered["user_id"]
    return client


def test_typing_and_receipts_show_between_dagma_and_synapse(
    dagma: LiveServer, synapse_peer: SynapsePeer
) -> None:
    tag = secrets.token_hex(3)
    dan = MatrixClient(dagma.base_url, timeout=120).register(f"dan{tag}")
    sam = _synapse_client(synapse_peer, f"sam{tag}")
    try:
        room_id = dan.create_room(preset="public_chat", room_version="11")
        joined = sam.post(f"/join/{q(room_id)}", params={"server_name": dagma.server_name}).json
        assert joined["room_id"] == room_id
        dan_id, sam_id = str(dan.user_id), str(sam.user_id)

        # Dagma -> Synapse
        from_sam = sam.send(room_id, "from sam")
        _wait_sync(dan, lambda body: from_sam in str(body.get("rooms", {})), "Sam's message on Dagma")
        assert (
            dan.put(f"/rooms/{q(room_id)}/typing/{q(dan_id)}", {"typing": True, "timeout": 30000}).status
            == 200
        )
        _wait_sync(sam, _typing(room_id, dan_id), "Dan typing on Synapse")
        assert dan.post(f"/rooms/{q(room_id)}/receipt/m.read/{q(from_sam)}", {}).status == 200
        _wait_sync(sam, _receipt(room_id, from_sam, dan_id), "Dan's receipt on Synapse")

        # Synapse -> Dagma
        from_dan = dan.send(room_id, "from dan")
        _wait_sync(sam, lambda body: from_dan in str(body.get("rooms", {})), "Dan's message on Synapse")
        assert (
            sam.put(f"/rooms/{q(room_id)}/typing/{q(sam_id)}", {"typing": True, "timeout": 30000}).status
            == 200
        )
        _wait_sync(dan, _typing(room_id, sam_id), "Sam typing on Dagma")
        assert sam.post(f"/rooms/{q(room_id)}/receipt/m.read/{q(from_dan)}", {}).status == 200
        _wait_sync(dan, _receipt(room_id, from_dan, sam_id), "Sam's receipt on Dagma")
    finally:
        dan.close()
        sam.close()


def test_presence_shows_between_dagma_and_synapse(dagma: LiveServer, synapse_peer: SynapsePeer) -> None:
    """Presence goes to the servers sharing a room with the user (Synapse runs with
    ``presence: enabled: true``); each side's status change shows in the other's /sync."""
    tag = secrets.token_hex(3)
    dan = MatrixClient(dagma.base_url, timeout=120).register(f"dan{tag}")
    sam = _synapse_client(synapse_peer, f"sam{tag}")
    try:
        room_id = sam.create_room(preset="public_chat", room_version="11")
        assert dan.post(f"/join/{q(room_id)}", params={"server_name": synapse_peer.server_name}).status == 200
        dan_id, sam_id = str(dan.user_id), str(sam.user_id)
        from_dan = dan.send(room_id, "from dan")
        _wait_sync(sam, lambda body: from_dan in str(body.get("rooms", {})), "Dan's message on Synapse")

        # Dagma -> Synapse
        status = {"presence": "online", "status_msg": f"on Dagma {tag}"}
        assert dan.put(f"/presence/{q(dan_id)}/status", status).status == 200
        _wait_sync(sam, _presence(dan_id, f"on Dagma {tag}"), "Dan's presence on Synapse")
        assert sam.get(f"/presence/{q(dan_id)}/status").json["status_msg"] == f"on Dagma {tag}"

        # Synapse -> Dagma
        status = {"presence": "unavailable", "status_msg": f"on Synapse {tag}"}
        assert sam.put(f"/presence/{q(sam_id)}/status", status).status == 200
        _wait_sync(dan, _presence(sam_id, f"on Synapse {tag}"), "Sam's presence on Dagma")
        seen = dan.get(f"/presence/{q(sam_id)}/status").json
        assert (seen["presence"], seen["status_msg"]) == ("unavailable", f"on Synapse {tag}")
    finally:
        dan.close()
        sam.close()

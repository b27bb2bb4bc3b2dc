"""End-to-end encryption between Dagma and a real Synapse, each user with matrix-nio.

A nio user on Dagma invites a nio user on Synapse to an encrypted room; each sends a
Megolm-encrypted message the other decrypts. On the way: each server's ``/keys/query``
and ``/keys/claim`` ask the other (``/user/devices``, ``/user/keys/query``,
``/user/keys/claim``), the Megolm sessions travel as Olm to-device messages
(``m.direct_to_device`` EDUs both ways) and device lists are tracked across servers.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nio
import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import federating_dagma, running
from tests.support import synapse as synapse_support
from tests.support.client import MatrixClient
from tests.support.live import LiveServer
from tests.support.synapse import SynapsePeer

pytestmark = pytest.mark.live

synapse_venv = synapse_support.synapse_venv
synapse_peer = synapse_support.synapse_peer

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def dagma(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = federating_dagma(
        test_ca, tmp_path_factory.mktemp("dagma-syn-e2ee") / "d", stem="dagma-e2ee", redis=False
    )
    with running(server):
        yield server


async def _client(base_url: str, user_id: str, store: Path) -> nio.AsyncClient:
    store.mkdir(parents=True, exist_ok=True)
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    client = nio.AsyncClient(base_url, user_id, store_path=str(store), config=config)
    logged_in = await client.login(PASSWORD, device_name="nio e2ee")
    assert isinstance(logged_in, nio.LoginResponse), logged_in
    uploaded = await client.keys_upload()
    assert isinstance(uploaded, nio.KeysUploadResponse), uploaded
    return client


async def _sync_until(client: nio.AsyncClient, what: str, check: Callable[[nio.SyncResponse], Any]) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while loop.time() < deadline:
        response = await client.sync(timeout=1000)
        assert isinstance(response, nio.SyncResponse), response
        found = check(response)
        if found:
            return found
    raise AssertionError(f"{client.user_id}: never saw {what}")


def _message(room_id: str, event_id: str) -> Callable[[nio.SyncResponse], Any]:
    def check(response: nio.SyncResponse) -> Any:
        room = response.rooms.join.get(room_id)
        for event in room.timeline.events if room else []:
            if event.event_id == event_id:
                return event
        return None

    return check


async def _send(client: nio.AsyncClient, room_id: str, body: str) -> str:
    sent = await client.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": body}, ignore_unverified_devices=True
    )
    assert isinstance(sent, nio.RoomSendResponse), sent
    return str(sent.event_id)


async def _journey(dagma: LiveServer, synapse: SynapsePeer, tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    made = MatrixClient(dagma.base_url).register(f"dee{tag}", PASSWORD)
    dee_id = str(made.user_id)
    made.close()
    sam_id = str(synapse.register(f"sam{tag}")["user_id"])
    dee = await _client(dagma.base_url, dee_id, tmp_path / "dee")
    sam = await _client(synapse.base_url, sam_id, tmp_path / "sam")
    try:
        await dee.sync(timeout=0)
        await sam.sync(timeout=0)
        created = await dee.room_create(
            invite=[sam_id],
            initial_state=[
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ],
        )
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        await _sync_until(sam, "the invite", lambda r: room_id in r.rooms.invite)
        joined = await sam.join(room_id)
        assert isinstance(joined, nio.JoinResponse), joined
        await _sync_until(dee, "Sam's join", lambda r: sam_id in dee.rooms[room_id].users)
        await _sync_until(
            sam, "the joined room", lambda r: room_id in sam.rooms and dee_id in sam.rooms[room_id].users
        )

        # Dagma -> Synapse: Dee's nio asks Dagma for Sam's keys (Dagma asks Synapse), claims a
        # one-time key of Sam's device, sends the room key over Olm (to-device EDU), then the message.
        first = await _send(dee, room_id, "hello from Dagma")
        event = await _sync_until(sam, "Dee's message", _message(room_id, first))
        assert isinstance(event, nio.RoomMessageText), event
        assert event.body == "hello from Dagma" and event.decrypted and event.sender == dee_id

        # Synapse -> Dagma.
        second = await _send(sam, room_id, "hello from Synapse")
        event = await _sync_until(dee, "Sam's message", _message(room_id, second))
        assert isinstance(event, nio.RoomMessageText), event
        assert event.body == "hello from Synapse" and event.decrypted and event.sender == sam_id

        # Each side's copy of the other's device key is the device's own.
        assert dee.device_store[sam_id][sam.device_id].ed25519 == sam.olm.account.identity_keys["ed25519"]
        assert sam.device_store[dee_id][dee.device_id].ed25519 == dee.olm.account.identity_keys["ed25519"]
    finally:
        await dee.close()
        await sam.close()


def test_nio_users_on_dagma_and_synapse_decrypt_each_others_messages(
    dagma: LiveServer, synapse_peer: SynapsePeer, tmp_path: Path
) -> None:
    asyncio.run(_journey(dagma, synapse_peer, tmp_path))

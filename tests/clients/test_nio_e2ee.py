"""matrix-nio with encryption (Olm/Megolm from the vodozemac wheel) against a live server.

Two users, an encrypted room, and a message nio encrypts for one and decrypts
for the other: device keys, one-time key claims, to-device Olm messages and
device-list tracking all go through the server for real.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import nio
from nio.crypto import ENCRYPTION_ENABLED

from tests.support.client import MatrixClient

PASSWORD = "correct horse battery"


async def _client(base_url: str, user_id: str, store: Path) -> nio.AsyncClient:
    store.mkdir(parents=True, exist_ok=True)
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    client = nio.AsyncClient(base_url, user_id, store_path=str(store), config=config)
    logged_in = await client.login(PASSWORD, device_name="nio e2ee")
    assert isinstance(logged_in, nio.LoginResponse), logged_in
    assert client.should_upload_keys
    uploaded = await client.keys_upload()
    assert isinstance(uploaded, nio.KeysUploadResponse), uploaded
    assert uploaded.signed_curve25519_count > 0
    return client


async def _sync_until(client: nio.AsyncClient, what: str, check, rounds: int = 30):
    for _ in range(rounds):
        response = await client.sync(timeout=500)
        assert isinstance(response, nio.SyncResponse), response
        found = check(response)
        if found:
            return found
    raise AssertionError(f"{client.user_id}: never saw {what}")


async def _journey(base_url: str, tmp_path: Path) -> None:
    ids: list[str] = []
    for _ in range(2):
        c = MatrixClient(base_url).register(f"nioe2e{secrets.token_hex(4)}", PASSWORD)
        ids.append(str(c.user_id))
        c.close()
    alice = await _client(base_url, ids[0], tmp_path / "alice")
    bob = await _client(base_url, ids[1], tmp_path / "bob")
    try:
        await alice.sync(timeout=0)
        await bob.sync(timeout=0)
        created = await alice.room_create(
            invite=[bob.user_id],
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
        await _sync_until(bob, "the invite", lambda r: room_id in r.rooms.invite)
        joined = await bob.join(room_id)
        assert isinstance(joined, nio.JoinResponse), joined
        await _sync_until(alice, "bob joined", lambda r: bob.user_id in alice.rooms[room_id].users)
        assert alice.rooms[room_id].encrypted

        # nio queries bob's device keys, claims a one-time key, sends the Megolm
        # session over Olm (to-device), then the encrypted event.
        sent = await alice.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": "hello from nio"},
            ignore_unverified_devices=True,
        )
        assert isinstance(sent, nio.RoomSendResponse), sent

        def decrypted(response: nio.SyncResponse):
            room = response.rooms.join.get(room_id)
            for event in room.timeline.events if room else []:
                if event.event_id == sent.event_id:
                    return event
            return None

        event = await _sync_until(bob, "the message", decrypted)
        assert isinstance(event, nio.RoomMessageText), event
        assert event.body == "hello from nio"
        assert event.decrypted and event.sender == alice.user_id
        # On the wire (and in the server's database) it is ciphertext only.
        raw = MatrixClient(base_url, bob.access_token)
        wire = raw.get(f"/rooms/{room_id}/event/{sent.event_id}").json
        raw.close()
        assert wire["type"] == "m.room.encrypted" and "hello" not in str(wire["content"])
        # Bob tracks alice's devices too (she is in an encrypted room with him): his
        # copy of her device key comes from the server and matches alice's own.
        if bob.should_query_keys:
            queried = await bob.keys_query()
            assert isinstance(queried, nio.KeysQueryResponse), queried
        assert alice.device_id in bob.device_store[alice.user_id]
        assert (
            bob.device_store[alice.user_id][alice.device_id].ed25519
            == alice.olm.account.identity_keys["ed25519"]
        )
    finally:
        await alice.close()
        await bob.close()


def test_nio_encrypts_for_another_user_who_decrypts(dagma_server, tmp_path: Path) -> None:
    assert ENCRYPTION_ENABLED
    asyncio.run(_journey(dagma_server.base_url, tmp_path))

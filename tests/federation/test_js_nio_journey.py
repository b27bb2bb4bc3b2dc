"""The E2EE client journey across servers (issue 11, "End-to-end across servers").

Dee and Deb are on Dagma with matrix-js-sdk (its Rust crypto, driven step by step through
``tests/js/agent.mjs``); Sam is on a real Synapse with matrix-nio. js-sdk is on the Dagma
side: its Rust crypto is the stricter client, so it checks what Dagma serves it of the other
server's users (devices from the cache kept by ``m.device_list_update``, master keys from
``m.signing_key_update``, one-time keys claimed over federation).

An encrypted DM and an encrypted group room; messages decrypt both ways; a new device of
Sam's appears at Dagma and receives the next room key; cross-signing is visible across the
servers and Dee verifies Sam; to-device messages both ways and a key claim across servers.
Then Synapse stops, Dee sends an encrypted message and logs in a new device, Synapse
restarts: Sam decrypts the message and the device lists are right on both sides.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nio
import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.support import synapse as synapse_support
from tests.support.client import MatrixClient
from tests.support.e2e_keys import CrossSigningKeys, sign
from tests.support.js import PASSWORD, JsAgent
from tests.support.live import LiveServer
from tests.support.synapse import SynapsePeer

pytestmark = [pytest.mark.live, pytest.mark.slow]

synapse_venv = synapse_support.synapse_venv
synapse_peer = synapse_support.synapse_peer

ENCRYPTED = [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]


@pytest.fixture(scope="module")
def dagma(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("dagma-journey")
    cert = test_ca.issue("localhost", "127.0.0.1", stem="dagma-journey")
    server = LiveServer(
        root / "d",
        federation_tls=(cert.cert_path, cert.key_path),
        redis=False,
        config={"federation_custom_ca_list": [str(test_ca.cert_path)], "ip_range_whitelist": LOOPBACK},
    )
    try:
        yield server.start()
    finally:
        server.destroy()


async def _nio(base_url: str, user_id: str, store: Path, name: str) -> nio.AsyncClient:
    store.mkdir(parents=True, exist_ok=True)
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    client = nio.AsyncClient(base_url, user_id, store_path=str(store), config=config)
    logged_in = await client.login(PASSWORD, device_name=name)
    assert isinstance(logged_in, nio.LoginResponse), logged_in
    uploaded = await client.keys_upload()
    assert isinstance(uploaded, nio.KeysUploadResponse), uploaded
    return client


async def _sync_until(client: nio.AsyncClient, what: str, check: Callable[[nio.SyncResponse], Any]) -> Any:
    """Syncs (and, as nio's own sync loop does, queries the keys it is told changed) until ``check``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while loop.time() < deadline:
        response = await client.sync(timeout=1000)
        assert isinstance(response, nio.SyncResponse), response
        if client.should_query_keys:
            await client.keys_query()
        found = check(response)
        if found:
            return found
    raise AssertionError(f"{client.user_id} ({client.device_id}): never saw {what}")


def _message(room_id: str, event_id: str) -> Callable[[nio.SyncResponse], Any]:
    def check(response: nio.SyncResponse) -> Any:
        room = response.rooms.join.get(room_id)
        return next((e for e in (room.timeline.events if room else []) if e.event_id == event_id), None)

    return check


def _to_device(event_type: str) -> Callable[[nio.SyncResponse], Any]:
    def check(response: nio.SyncResponse) -> Any:
        return next((e for e in response.to_device_events if e.source.get("type") == event_type), None)

    return check


async def _nio_send(client: nio.AsyncClient, room_id: str, body: str) -> str:
    sent = await client.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": body}, ignore_unverified_devices=True
    )
    assert isinstance(sent, nio.RoomSendResponse), sent
    return str(sent.event_id)


async def _decrypted_at_nio(
    client: nio.AsyncClient, room_id: str, event_id: str, body: str, sender: str
) -> None:
    event = await _sync_until(client, f"{event_id} in {room_id}", _message(room_id, event_id))
    assert isinstance(event, nio.RoomMessageText), event  # a MegolmEvent if it did not decrypt
    assert event.decrypted and event.body == body and event.sender == sender


async def _journey(dagma: LiveServer, synapse: SynapsePeer, tmp_path: Path) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    dee_id, deb_id = (
        str(MatrixClient(dagma.base_url).register(f"{n}{tag}", PASSWORD).user_id) for n in ("dee", "deb")
    )
    sam_id = str(synapse.register(f"sam{tag}")["user_id"])
    js = await JsAgent(base_url=dagma.base_url).start()
    sam = await _nio(synapse.base_url, sam_id, tmp_path / "sam", "sam laptop")
    clients = [sam]
    timings: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    try:
        dee = await js.call("login", name="dee", userId=dee_id)
        await js.call("login", name="deb", userId=deb_id)
        await sam.sync(timeout=0)

        # --- An encrypted DM, both ways.
        dm = await js.call(
            "createRoom", name="dee",
            body={"is_direct": True, "preset": "trusted_private_chat", "invite": [sam_id], "initial_state": ENCRYPTED},
        )  # fmt: skip
        await _sync_until(sam, "the DM invite", lambda r: dm in r.rooms.invite)
        assert isinstance(await sam.join(dm), nio.JoinResponse)
        await js.call("waitMember", name="dee", roomId=dm, userId=sam_id)
        await _sync_until(sam, "the DM joined", lambda r: dm in sam.rooms and dee_id in sam.rooms[dm].users)
        started = loop.time()
        event_id = await js.call("send", name="dee", roomId=dm, body="dm from js-sdk on Dagma")
        await _decrypted_at_nio(sam, dm, event_id, "dm from js-sdk on Dagma", dee_id)
        timings["dm_js_to_nio_s"] = loop.time() - started
        started = loop.time()
        event_id = await _nio_send(sam, dm, "dm from nio on Synapse")
        seen = await js.call("decrypt", name="dee", roomId=dm, eventId=event_id)
        timings["dm_nio_to_js_s"] = loop.time() - started
        assert seen == {"wireType": "m.room.encrypted", "type": "m.room.message", "sender": sam_id,
                        "body": "dm from nio on Synapse", "failure": None}  # fmt: skip

        # --- An encrypted group room: Dee and Deb on Dagma, Sam on Synapse.
        group = await js.call(
            "createRoom",
            name="dee",
            body={"preset": "private_chat", "invite": [deb_id, sam_id], "initial_state": ENCRYPTED},
        )
        await js.call("join", name="deb", roomId=group)
        await _sync_until(sam, "the group invite", lambda r: group in r.rooms.invite)
        assert isinstance(await sam.join(group), nio.JoinResponse)
        for member in (deb_id, sam_id):
            await js.call("waitMember", name="dee", roomId=group, userId=member)
        await js.call("waitMember", name="deb", roomId=group, userId=sam_id)
        await _sync_until(
            sam, "the group joined", lambda r: group in sam.rooms and deb_id in sam.rooms[group].users
        )
        event_id = await _nio_send(sam, group, "group hello from nio")
        for name in ("dee", "deb"):
            seen = await js.call("decrypt", name=name, roomId=group, eventId=event_id)
            assert (seen["body"], seen["failure"]) == ("group hello from nio", None), (name, seen)
        event_id = await js.call("send", name="deb", roomId=group, body="group hello from Deb")
        await _decrypted_at_nio(sam, group, event_id, "group hello from Deb", deb_id)

        # --- Sam's new device appears at Dagma (m.device_list_update) and gets the next room key.
        phone = await _nio(synapse.base_url, sam_id, tmp_path / "phone", "sam phone")
        clients.append(phone)
        await phone.sync(timeout=0)
        sam_devices = sorted([str(sam.device_id), str(phone.device_id)])
        started = loop.time()
        await js.call("devices", name="dee", userId=sam_id, expected=sam_devices)
        timings["new_remote_device_seen_s"] = loop.time() - started
        event_id = await js.call("send", name="dee", roomId=group, body="for both of Sam's devices")
        for client in (sam, phone):
            await _decrypted_at_nio(client, group, event_id, "for both of Sam's devices", dee_id)

        # --- Cross-signing: Dee's js-sdk bootstraps it; Synapse serves Sam her master key.
        dee_master = (await js.call("bootstrapCrossSigning", name="dee"))["master"]
        async with httpx.AsyncClient(base_url=synapse.base_url, timeout=30) as http:
            headers = {"Authorization": f"Bearer {sam.access_token}"}

            async def sam_query(user_id: str) -> dict[str, Any]:
                r = await http.post(
                    "/_matrix/client/v3/keys/query", json={"device_keys": {user_id: []}}, headers=headers
                )
                r.raise_for_status()
                answer: dict[str, Any] = r.json()
                return answer

            def dee_cross_signed(answer: dict[str, Any]) -> bool:
                """Dee's master key, and her device signed by her self-signing key (the
                client uploads that signature after the keys: a second update)."""
                master = answer.get("master_keys", {}).get(dee_id, {})
                ssk = answer.get("self_signing_keys", {}).get(dee_id, {})
                device = answer.get("device_keys", {}).get(dee_id, {}).get(dee["deviceId"], {})
                return list(master.get("keys", {}).values()) == [dee_master] and any(
                    k in device.get("signatures", {}).get(dee_id, {}) for k in ssk.get("keys", {})
                )

            deadline = loop.time() + 60
            while not dee_cross_signed(answer := await sam_query(dee_id)):
                assert loop.time() < deadline, f"Synapse never served Dee's cross-signing: {answer}"
                await asyncio.sleep(0.2)  # polling Synapse's answer, with a deadline

            # Sam sets up cross-signing on Synapse (nio cannot: its keys are made here) and
            # signs his laptop with his self-signing key; Dee's js-sdk sees his identity.
            cross = CrossSigningKeys(sam_id)
            r = await http.post(
                "/_matrix/client/v3/keys/device_signing/upload", json=cross.upload_body(), headers=headers
            )
            r.raise_for_status()
            laptop = (await sam_query(sam_id))["device_keys"][sam_id][sam.device_id]
            signed = sign({k: v for k, v in laptop.items() if k not in ("signatures", "unsigned")},
                          user_id=sam_id, key=cross.self_signing)  # fmt: skip
            r = await http.post("/_matrix/client/v3/keys/signatures/upload",
                                json={sam_id: {sam.device_id: signed}}, headers=headers)  # fmt: skip
            assert r.status_code == 200 and r.json()["failures"] == {}, r.text
        await js.call("masterKey", name="dee", userId=sam_id, expected=cross.master_id)
        # Dee verifies Sam: Dagma keeps her signature on Sam's master key, for her eyes only.
        assert await js.call("verifyUser", name="dee", userId=sam_id) is True
        dee_http = MatrixClient(dagma.base_url)
        deb_http = MatrixClient(dagma.base_url)
        for client_http, user_id in ((dee_http, dee_id), (deb_http, deb_id)):
            login = client_http.post("/login", {"type": "m.login.password", "password": PASSWORD,
                                                "identifier": {"type": "m.id.user", "user": user_id}}).json  # fmt: skip
            client_http.access_token = login["access_token"]
        try:
            mine = dee_http.post("/keys/query", {"device_keys": {sam_id: []}}).json
            assert dee_id in mine["master_keys"][sam_id]["signatures"]
            theirs = deb_http.post("/keys/query", {"device_keys": {sam_id: []}}).json
            assert dee_id not in theirs["master_keys"][sam_id].get("signatures", {})
            assert sam_id not in theirs.get("user_signing_keys", {})

            # --- A key claim across servers: one of the phone's one-time keys, signed by it.
            claimed = deb_http.post(
                "/keys/claim",
                {"one_time_keys": {sam_id: {phone.device_id: "signed_curve25519"}}},
                spec="/keys/claim",
            ).json
            assert claimed["failures"] == {}
            ((key_id, key),) = claimed["one_time_keys"][sam_id][phone.device_id].items()
            assert key_id.startswith("signed_curve25519:")
            assert f"ed25519:{phone.device_id}" in key["signatures"][sam_id]
        finally:
            dee_http.close()
            deb_http.close()

        # --- To-device messages both ways.
        await js.call(
            "sendToDevice",
            name="dee",
            userId=sam_id,
            deviceId=sam.device_id,
            type="org.dagma.ping",
            content={"n": 1},
        )
        ping = await _sync_until(sam, "Dee's to-device ping", _to_device("org.dagma.ping"))
        assert ping.source["sender"] == dee_id and ping.source["content"] == {"n": 1}
        pong = nio.ToDeviceMessage("org.dagma.pong", dee_id, dee["deviceId"], {"n": 2})
        assert isinstance(await sam.to_device(pong), nio.ToDeviceResponse)
        got = await js.call("waitToDevice", name="dee", type="org.dagma.pong")
        assert got == {"type": "org.dagma.pong", "sender": sam_id, "content": {"n": 2}}

        # --- Outage: Synapse stops; Dee sends an encrypted message and logs in a new device.
        synapse.stop()
        try:
            during = await js.call("send", name="dee", roomId=group, body="sent while Synapse was down")
            tablet = await js.call("login", name="dee2", userId=dee_id)
            dee_devices = sorted([dee["deviceId"], tablet["deviceId"]])
            await js.call("devices", name="dee", userId=dee_id, expected=dee_devices)
        finally:
            started = loop.time()
            synapse.start()  # the session's peer: running again for the tests after this one
        await _decrypted_at_nio(sam, group, during, "sent while Synapse was down", dee_id)
        timings["outage_message_after_restart_s"] = loop.time() - started

        # Both sides' device lists are right: Synapse's clients know Dee's tablet, Dee's new
        # device knows both of Sam's.
        await _sync_until(
            sam,
            "Dee's tablet",
            lambda r: sorted(d.id for d in sam.device_store.active_user_devices(dee_id)) == dee_devices,
        )
        assert sam.device_store[dee_id][tablet["deviceId"]].ed25519 == tablet["ed25519"]
        timings["outage_device_seen_after_restart_s"] = loop.time() - started
        await js.call("devices", name="dee2", userId=sam_id, expected=sam_devices)
        # ... and the tablet gets Sam's next room key: nio shares a Megolm session once, so Sam's
        # client starts a new one (as it would when it learns of a new device by other means).
        sam.invalidate_outbound_session(group)
        event_id = await _nio_send(sam, group, "welcome, tablet")
        for name in ("dee", "dee2"):
            seen = await js.call("decrypt", name=name, roomId=group, eventId=event_id)
            assert (seen["body"], seen["failure"]) == ("welcome, tablet", None), (name, seen)
        return timings
    finally:
        await js.close()
        for client in clients:
            await client.close()


def test_js_sdk_on_dagma_and_nio_on_synapse_share_encrypted_rooms_across_an_outage(
    dagma: LiveServer, synapse_peer: SynapsePeer, tmp_path: Path
) -> None:
    timings = asyncio.run(_journey(dagma, synapse_peer, tmp_path))
    print("journey timings:", {k: round(v, 2) for k, v in timings.items()})

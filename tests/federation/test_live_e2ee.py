"""Two Dagma processes over TLS: end-to-end encryption across servers, through the real APIs.

Alice on A and Bob on B share an encrypted room. Each side's ``/keys/query`` and
``/keys/claim`` reach the other server (``/user/devices``, ``/user/keys/query``,
``/user/keys/claim``), a to-device message crosses in an ``m.direct_to_device`` EDU, and
a new device of Bob's reaches A in ``m.device_list_update`` EDUs (Alice's ``/sync``
reports Bob in ``device_lists.changed`` and her next query shows the device, from A's
cache). Spec: server-server API "End-to-End Encryption", "Device Management",
"Send-to-device messaging".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.support.client import MatrixClient, q
from tests.support.e2e_keys import DeviceKeys
from tests.support.live import LiveServer
from tests.support.live import wait_for as _wait_for

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    root = tmp_path_factory.mktemp("fede2e")
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


def _upload(client: MatrixClient, *, one_time: int = 5) -> DeviceKeys:
    assert client.user_id and client.device_id
    device = DeviceKeys(client.user_id, client.device_id)
    client.post(
        "/keys/upload", {"device_keys": device.device_keys(), "one_time_keys": device.one_time_keys(one_time)}
    )
    return device


def _devices(client: MatrixClient, user_id: str) -> dict[str, Any]:
    answer = client.post("/keys/query", {"device_keys": {user_id: []}}, spec="/keys/query").json
    assert answer["failures"] == {}, answer["failures"]
    devices: dict[str, Any] = answer["device_keys"].get(user_id, {})
    return devices


def test_keys_to_device_and_device_lists_cross_servers(pair) -> None:
    a, b = pair
    alice = MatrixClient(a.base_url).register("alice")
    bob = MatrixClient(b.base_url).register("bob")
    clients = [alice, bob]
    try:
        room_id = alice.create_room(
            preset="public_chat",
            room_version="11",
            initial_state=[
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ],
        )
        assert bob.post(f"/join/{q(room_id)}", params={"server_name": a.server_name}).json == {
            "room_id": room_id
        }
        alice_keys = _upload(alice)
        bob_keys = _upload(bob)

        # Each side sees the other's device keys, as uploaded (signatures intact).
        found = _devices(alice, bob.user_id or "")
        assert list(found) == [bob.device_id]
        assert found[bob_keys.device_id]["keys"] == bob_keys.device_keys()["keys"]
        assert list(_devices(bob, alice.user_id or "")) == [alice.device_id]

        # A one-time key of the other server's device, claimed once.
        claimed = alice.post(
            "/keys/claim",
            {"one_time_keys": {bob.user_id: {bob.device_id: "signed_curve25519"}}},
            spec="/keys/claim",
        ).json
        assert claimed["failures"] == {}
        (key_id,) = claimed["one_time_keys"][bob.user_id][bob.device_id]
        assert key_id.startswith("signed_curve25519:")
        again = alice.post(
            "/keys/claim", {"one_time_keys": {bob.user_id: {bob.device_id: "signed_curve25519"}}}
        ).json
        assert list(again["one_time_keys"][bob.user_id][bob.device_id]) != [key_id]  # handed out once
        back = bob.post(
            "/keys/claim", {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
        ).json
        assert back["failures"] == {} and list(back["one_time_keys"][alice.user_id]) == [alice.device_id]
        assert alice_keys.device_id == alice.device_id

        # A to-device message from A to B.
        since = bob.sync()["next_batch"]
        alice.put(
            f"/sendToDevice/m.room.encrypted/{q('txn1')}",
            {
                "messages": {
                    bob.user_id: {bob.device_id: {"algorithm": "m.olm.v1.curve25519-aes-sha2", "n": 1}}
                }
            },
        )

        def to_device() -> list[Any]:
            events: list[Any] = bob.sync(since=since, timeout=5000).get("to_device", {}).get("events", [])
            return events

        (event,) = _wait_for(to_device, "the to-device message on B")
        assert event["sender"] == alice.user_id and event["type"] == "m.room.encrypted"
        assert event["content"]["n"] == 1

        # Bob's new device: A hears of it (device-list updates) and Alice's sync says so.
        alice_since = alice.sync()["next_batch"]
        phone = MatrixClient(b.base_url)
        clients.append(phone)
        login = phone.post(
            "/login",
            {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
             "password": "correct horse battery"},
        ).json  # fmt: skip
        phone.access_token, phone.user_id, phone.device_id = (
            login["access_token"],
            login["user_id"],
            login["device_id"],
        )
        _upload(phone)

        def changed() -> bool:
            body = alice.sync(since=alice_since, timeout=5000)
            return bob.user_id in body.get("device_lists", {}).get("changed", [])

        _wait_for(changed, "Bob in Alice's device_lists.changed")
        _wait_for(
            lambda: (
                sorted(_devices(alice, bob.user_id or ""))
                == sorted([str(bob.device_id), str(phone.device_id)])
            ),
            "Bob's new device in Alice's /keys/query",
        )
        # Served from A's cache, kept by the EDUs: no re-fetch needed, and no update missed.
        [(stale, stream_id)] = a.query(
            "SELECT stale, stream_id FROM e2e_remote_device_lists WHERE user_id = %s", (bob.user_id,)
        )
        assert stale is False and stream_id > 0
        [(pending,)] = b.query(
            "SELECT count(*) FROM federation_outbox_edus WHERE destination = %s AND dead_letter IS NULL",
            (a.server_name,),
        )
        assert pending == 0
    finally:
        for client in clients:
            client.close()

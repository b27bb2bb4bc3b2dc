"""Dagma and a real Synapse (installed from PyPI by ``tests.support.synapse``) over TLS.

Rooms are shared by real joins through each server's client API (make_join/send_join
both ways, room versions 10-12), then messages go both ways through each side's
sender and ``/send``; Dagma's backlog reaches a Synapse that was stopped, in order.
Synapse's view is read through its own client API (``/messages``, ``/members``).
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.support import synapse as synapse_support
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer, advance_clock
from tests.support.live import wait_for as _wait_for
from tests.support.synapse import SynapsePeer

pytestmark = pytest.mark.live

# The session fixtures (install once, one Synapse per session), shared with other interop tests.
synapse_venv = synapse_support.synapse_venv
synapse_peer = synapse_support.synapse_peer


@pytest.fixture(scope="module")
def dagma(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("dagma-syn")
    cert = test_ca.issue("localhost", "127.0.0.1", stem="dagma")
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


def _https(ca: TestCA) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(ca.cert_path)), timeout=60)


def test_dagma_fetches_synapses_keys_over_tls(
    dagma: LiveServer, synapse_peer: SynapsePeer, test_ca: TestCA
) -> None:
    with _https(test_ca) as http:
        # Dagma as notary: it fetches Synapse's keys from Synapse (discovery, TLS, our CA).
        via_dagma = http.get(
            f"{dagma.federation_url}/_matrix/key/v2/query/{quote(synapse_peer.server_name, safe='')}"
        ).json()
        own = http.get(f"{synapse_peer.federation_url}/_matrix/key/v2/server").json()
    [syn_keys] = via_dagma["server_keys"]
    assert syn_keys["server_name"] == synapse_peer.server_name
    assert set(syn_keys["verify_keys"]) == set(own["verify_keys"])


# --------------------------------------------------------------------------- real joins both ways


def _client(base_url: str, login: dict[str, Any]) -> MatrixClient:
    client = MatrixClient(base_url, login["access_token"], timeout=120)
    client.user_id = login["user_id"]
    return client


def _bodies(client: MatrixClient, room_id: str) -> list[str]:
    """Message bodies of the room as ``/messages`` gives them on the client's server, oldest first."""
    chunk = client.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 1000}).json["chunk"]
    return [e["content"].get("body") for e in reversed(chunk) if e["type"] == "m.room.message"]


def _members(client: MatrixClient, room_id: str) -> dict[str, str]:
    chunk = client.get(f"/rooms/{q(room_id)}/members").json["chunk"]
    return {e["state_key"]: e["content"]["membership"] for e in chunk}


def _pending(server: LiveServer, destination: str) -> int:
    [(count,)] = server.query(
        "SELECT count(*) FROM federation_outbox WHERE destination = %s AND dead_letter IS NULL",
        (destination,),
    )
    return int(count)


def _talk(first: MatrixClient, second: MatrixClient, room_id: str, tag: str) -> None:
    """Three messages each way, one side after the other; both servers end with the same order."""
    for i in range(3):
        first.send(room_id, f"{tag}-1-{i}")
    expected = [f"{tag}-1-{i}" for i in range(3)]
    _wait_for(lambda: _bodies(second, room_id) == expected, f"{first.user_id}'s messages on the other side")
    for i in range(3):
        second.send(room_id, f"{tag}-2-{i}")
    expected += [f"{tag}-2-{i}" for i in range(3)]
    _wait_for(lambda: _bodies(first, room_id) == expected, f"{second.user_id}'s messages on the other side")
    assert _bodies(second, room_id) == expected


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_a_dagma_user_joins_a_synapse_room_and_they_talk(
    dagma: LiveServer, synapse_peer: SynapsePeer, version: str
) -> None:
    tag = secrets.token_hex(3)
    sam = _client(synapse_peer.base_url, synapse_peer.register(f"sam{tag}"))
    dan = MatrixClient(dagma.base_url, timeout=120).register(f"dan{tag}")
    try:
        room_id = sam.create_room(preset="public_chat", room_version=version, name=f"Synapse {version}")
        joined = dan.post(f"/join/{q(room_id)}", params={"server_name": synapse_peer.server_name}).json
        assert joined == {"room_id": room_id}
        assert dan.get(f"/rooms/{q(room_id)}/state/m.room.create/").json["room_version"] == version
        assert dan.get(f"/rooms/{q(room_id)}/state/m.room.name/").json == {"name": f"Synapse {version}"}
        _wait_for(lambda: _members(sam, room_id).get(str(dan.user_id)) == "join", "Dan's join on Synapse")
        _talk(sam, dan, room_id, tag)
    finally:
        sam.close()
        dan.close()


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_a_synapse_user_joins_a_dagma_room_and_they_talk(
    dagma: LiveServer, synapse_peer: SynapsePeer, version: str
) -> None:
    tag = secrets.token_hex(3)
    dan = MatrixClient(dagma.base_url, timeout=120).register(f"dan{tag}")
    sam = _client(synapse_peer.base_url, synapse_peer.register(f"sam{tag}"))
    try:
        room_id = dan.create_room(preset="public_chat", room_version=version, name=f"Dagma {version}")
        joined = sam.post(f"/join/{q(room_id)}", params={"server_name": dagma.server_name}).json
        assert joined["room_id"] == room_id
        assert sam.get(f"/rooms/{q(room_id)}/state/m.room.name/").json == {"name": f"Dagma {version}"}
        assert _members(dan, room_id)[str(sam.user_id)] == "join"
        _talk(dan, sam, room_id, tag)
        # Synapse answered every transaction 200 (nothing dead-lettered, nothing left), having
        # checked our X-Matrix signatures with Dagma's key fetched from Dagma's Embassy.
        _wait_for(lambda: _pending(dagma, synapse_peer.server_name) == 0, "Dagma's outbox drained")
        [(success, dead, error)] = dagma.query(
            "SELECT last_success_ts, dead_lettered, last_error FROM federation_destinations "
            "WHERE server_name = %s",
            (synapse_peer.server_name,),
        )
        assert success is not None and dead == 0 and error == ""
        assert synapse_peer.query(
            "SELECT 1 FROM server_keys_json WHERE server_name = %s", (dagma.server_name,)
        )
    finally:
        dan.close()
        sam.close()


def test_a_stopped_synapse_gets_dagmas_backlog_in_order_once_it_is_back(
    dagma: LiveServer, synapse_peer: SynapsePeer
) -> None:
    tag = secrets.token_hex(3)
    dan = MatrixClient(dagma.base_url, timeout=120).register(f"dan{tag}")
    sam = _client(synapse_peer.base_url, synapse_peer.register(f"sam{tag}"))
    try:
        room_id = dan.create_room(preset="public_chat", room_version="11")
        sam.post(f"/join/{q(room_id)}", params={"server_name": dagma.server_name})
        dan.send(room_id, "before")
        _wait_for(lambda: _bodies(sam, room_id) == ["before"], "the first message on Synapse")
        synapse_peer.stop()
        try:
            expected = [f"offline {i}" for i in range(20)]
            for body in expected:
                dan.send(room_id, body)  # local sends never wait on the stopped peer
            _wait_for(lambda: _pending(dagma, synapse_peer.server_name) == 20, "20 queued PDUs")
        finally:
            synapse_peer.start()
        # Past any back-off Dagma built up while Synapse was down; the beat re-scan then sends.
        advance_clock(dagma.base_url, 2 * 3600 * 1000)
        _wait_for(lambda: _bodies(sam, room_id) == ["before", *expected], "the backlog on Synapse")
        [(count,)] = synapse_peer.query(
            "SELECT count(*) FROM events WHERE room_id = %s AND type = 'm.room.message'", (room_id,)
        )
        assert count == 21
        # And Synapse's way back works after the outage too.
        sam.send(room_id, "back")
        _wait_for(lambda: _bodies(dan, room_id)[-1:] == ["back"], "Synapse's message on Dagma")
    finally:
        dan.close()
        sam.close()

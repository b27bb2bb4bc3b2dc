"""Dagma and a real Synapse (installed from PyPI by ``tests.support.synapse``) over TLS.

Until the join handshake lands, a Synapse user is made a member of a Dagma room by
``join_remote_user_on_home`` (a join signed with Synapse's own key, persisted on
Dagma): enough to drive Dagma's outbox and sender against Synapse. Messages both
ways need Synapse to hold the room, i.e. a real join: that test belongs with the
join handshake and should reuse the ``synapse_peer`` fixture.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.support import synapse as synapse_support
from tests.support.client import MatrixClient
from tests.support.federation_rooms import join_remote_user_on_home
from tests.support.live import LiveServer
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


def _wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)  # polling what the server stored, with a deadline


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


def test_dagmas_sender_delivers_transactions_that_synapse_accepts(
    dagma: LiveServer, synapse_peer: SynapsePeer, tmp_path: Path
) -> None:
    alice = MatrixClient(dagma.base_url).register("alice")
    try:
        room_id = alice.create_room(preset="public_chat", room_version="11")
        syn_user = f"@sam:{synapse_peer.server_name}"
        join_remote_user_on_home(
            dagma,
            room_id=room_id,
            user_id=syn_user,
            server_name=synapse_peer.server_name,
            signing_key_path=synapse_peer.signing_key_path,
            out=tmp_path / "room.json",
        )
        for i in range(3):
            alice.send(room_id, f"to synapse {i}")

        def delivered() -> bool:
            rows = dagma.query(
                "SELECT last_success_ts, dead_lettered, last_error FROM federation_destinations "
                "WHERE server_name = %s",
                (synapse_peer.server_name,),
            )
            pending = dagma.query(
                "SELECT count(*) FROM federation_outbox WHERE destination = %s", (synapse_peer.server_name,)
            )[0][0]
            return bool(rows) and rows[0][0] is not None and pending == 0

        _wait_for(delivered, "Synapse to answer Dagma's transactions with 200")
        [(dead, error)] = dagma.query(
            "SELECT dead_lettered, last_error FROM federation_destinations WHERE server_name = %s",
            (synapse_peer.server_name,),
        )
        assert dead == 0 and error == ""
        # Synapse checked our X-Matrix signature with Dagma's key, fetched from Dagma's Embassy.
        assert synapse_peer.query(
            "SELECT 1 FROM server_keys_json WHERE server_name = %s", (dagma.server_name,)
        )
    finally:
        alice.close()

"""Cross-signing between Dagma and a real Synapse, through the client APIs of both.

Spec: client-server API "Cross-signing" (``POST /keys/signatures/upload``: a user-signing
key signs other users' master keys, and such a signature is visible only to its signer),
server-server API "End-to-End Encryption" (``m.signing_key_update``) and "Device
Management" (device keys, with the owner's self-signing signature, in
``m.device_list_update``).

Dee is on Dagma, Sam on Synapse, in one room. Sam's cross-signing keys and his device
signed by his self-signing key reach Dagma; Dee verifies Sam (signs his master key with
her user-signing key) and only she sees that; Dee's keys reach Synapse; when Sam resets
his identity, Dee's signature on the old master key is gone.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import federating_dagma, running
from tests.support import synapse as synapse_support
from tests.support.client import MatrixClient, q
from tests.support.e2e_keys import CrossSigningKeys, DeviceKeys, public, sign
from tests.support.live import LiveServer
from tests.support.live import wait_for as _wait_for
from tests.support.synapse import SynapsePeer

pytestmark = pytest.mark.live

synapse_venv = synapse_support.synapse_venv
synapse_peer = synapse_support.synapse_peer

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def dagma(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = federating_dagma(
        test_ca, tmp_path_factory.mktemp("dagma-xsign") / "d", stem="dagma-xsign", redis=False
    )
    with running(server):
        yield server


def _with_keys(client: MatrixClient) -> tuple[DeviceKeys, CrossSigningKeys]:
    """The client's device keys and cross-signing keys, uploaded, its device signed by its
    self-signing key (what a client does when it bootstraps cross-signing)."""
    assert client.user_id and client.device_id
    device = DeviceKeys(client.user_id, client.device_id)
    client.post(
        "/keys/upload", {"device_keys": device.device_keys(), "one_time_keys": device.one_time_keys(3)}
    )
    cross = CrossSigningKeys(client.user_id)
    client.post("/keys/device_signing/upload", cross.upload_body())
    signed = sign(device.device_keys(), user_id=client.user_id, key=cross.self_signing)
    answer = client.post("/keys/signatures/upload", {client.user_id: {client.device_id: signed}}).json
    assert answer.get("failures", {}) == {}, answer
    return device, cross


def _query(client: MatrixClient, user_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.post("/keys/query", {"device_keys": {user_id: []}}).json
    assert answer.get("failures", {}) == {}, answer
    return answer


def _master_signatures(answer: dict[str, Any], user_id: str) -> dict[str, Any]:
    signatures: dict[str, Any] = answer.get("master_keys", {}).get(user_id, {}).get("signatures", {})
    return signatures


def test_cross_signing_crosses_servers_and_a_verification_stays_with_its_signer(
    dagma: LiveServer, synapse_peer: SynapsePeer
) -> None:
    tag = secrets.token_hex(3)
    dee = MatrixClient(dagma.base_url).register(f"dee{tag}", PASSWORD)
    deb = MatrixClient(dagma.base_url).register(f"deb{tag}", PASSWORD)
    sam = MatrixClient(synapse_peer.base_url).register(f"sam{tag}", PASSWORD)
    clients = [dee, deb, sam]
    assert dee.user_id and deb.user_id and sam.user_id and sam.device_id
    try:
        room_id = dee.create_room(preset="public_chat", invite=[sam.user_id])
        deb.join(room_id)
        _wait_for(lambda: room_id in sam.sync().get("rooms", {}).get("invite", {}), "Sam's invite on Synapse")
        sam.post(f"/join/{q(room_id)}")
        _wait_for(
            lambda: any(
                e["type"] == "m.room.member" and e["state_key"] == sam.user_id
                for e in dee.get(f"/rooms/{q(room_id)}/state").json
                if e["content"].get("membership") == "join"
            ),
            "Sam's join on Dagma",
        )

        # Sam sets up cross-signing on Synapse: Dagma hears of his keys (m.signing_key_update)
        # and of his device signed by his self-signing key (m.device_list_update).
        sam_device, sam_cross = _with_keys(sam)
        sam_ssk = f"ed25519:{public(sam_cross.self_signing)}"

        def dagma_has_sams_identity() -> dict[str, Any] | None:
            answer = _query(dee, sam.user_id or "")
            device = answer["device_keys"].get(sam.user_id, {}).get(sam.device_id)
            if (
                device is None
                or sam_ssk not in device["signatures"].get(sam.user_id, {})
                or sam.user_id not in answer.get("master_keys", {})
                or sam.user_id not in answer.get("self_signing_keys", {})
            ):
                return None
            return answer

        seen = _wait_for(dagma_has_sams_identity, "Sam's cross-signing keys and signed device on Dagma")
        assert list(seen["master_keys"][sam.user_id]["keys"]) == [f"ed25519:{sam_cross.master_id}"]
        assert list(seen["self_signing_keys"][sam.user_id]["keys"]) == [sam_ssk]
        assert sam.user_id not in seen.get("user_signing_keys", {})  # never leaves Synapse
        # Served from Dagma's cache, kept by the EDUs.
        [(stale,)] = dagma.query(
            "SELECT stale FROM e2e_remote_device_lists WHERE user_id = %s", (sam.user_id,)
        )
        assert stale is False

        # Dee verifies Sam: her user-signing key signs his master key (as Dagma serves it).
        # Synapse has cached Dee's keys before she sets up cross-signing: it learns of them
        # from Dagma's updates.
        assert _query(sam, dee.user_id).get("master_keys", {}).get(dee.user_id) is None
        _, dee_cross = _with_keys(dee)
        dee_usk = f"ed25519:{public(dee_cross.user_signing)}"
        sam_master = seen["master_keys"][sam.user_id]
        signed_master = sign(
            {k: v for k, v in sam_master.items() if k != "signatures"},
            user_id=dee.user_id,
            key=dee_cross.user_signing,
        )

        # Refused, and nothing stored: a signature by a key that is not Dee's user-signing key,
        # and a master key that is not Sam's.
        forged = sign(
            {k: v for k, v in sam_master.items() if k != "signatures"},
            user_id=dee.user_id,
            key=dee_cross.master,
        )
        forged["signatures"][dee.user_id] = {dee_usk: forged["signatures"][dee.user_id].popitem()[1]}
        bad = dee.post("/keys/signatures/upload", {sam.user_id: {sam_cross.master_id: forged}}).json
        assert bad["failures"][sam.user_id][sam_cross.master_id]["errcode"] == "M_INVALID_SIGNATURE"
        other = CrossSigningKeys(sam.user_id)
        not_his = sign(other.key_object("master"), user_id=dee.user_id, key=dee_cross.user_signing)
        bad = dee.post("/keys/signatures/upload", {sam.user_id: {other.master_id: not_his}}).json
        assert bad["failures"][sam.user_id][other.master_id]["errcode"] == "M_INVALID_SIGNATURE"
        # A user whose server cannot be reached: a failure naming it, nothing stored.
        nowhere = "@ghost:127.0.0.1:1"
        bad = dee.post("/keys/signatures/upload", {nowhere: {"AAAA": {"user_id": nowhere}}}).json
        assert bad["failures"][nowhere]["AAAA"]["errcode"] == "M_UNKNOWN"
        assert "127.0.0.1:1" in bad["failures"][nowhere]["AAAA"]["error"]
        assert dagma.query(
            "SELECT count(*) FROM e2e_cross_signing_signatures WHERE signer_user_id = %s AND target_user_id <> %s",
            (dee.user_id, dee.user_id),
        ) == [(0,)]

        ok = dee.post(
            "/keys/signatures/upload",
            {sam.user_id: {sam_cross.master_id: signed_master}},
            spec="/keys/signatures/upload",
        ).json
        assert ok["failures"] == {}
        mine = dee.post("/keys/query", {"device_keys": {sam.user_id: []}}, spec="/keys/query").json
        assert _master_signatures(mine, sam.user_id)[dee.user_id] == {
            dee_usk: signed_master["signatures"][dee.user_id][dee_usk]
        }
        # Sam's own signatures on his master key are still there (his device's, if any, from Synapse).
        assert set(_master_signatures(mine, sam.user_id)) - {dee.user_id} == set(
            _master_signatures(seen, sam.user_id)
        )
        # Only Dee sees whom she verified: not Deb on Dagma, not Sam on Synapse.
        assert dee.user_id not in _master_signatures(_query(deb, sam.user_id), sam.user_id)
        assert dee.user_id not in _master_signatures(_query(sam, sam.user_id), sam.user_id)

        # Dee's identity reached Synapse (m.signing_key_update, or a resync that got it).
        def synapse_has_dees_master() -> bool:
            answer = _query(sam, dee.user_id or "")
            master = answer.get("master_keys", {}).get(dee.user_id)
            return master is not None and list(master["keys"]) == [f"ed25519:{dee_cross.master_id}"]

        _wait_for(synapse_has_dees_master, "Dee's master key on Synapse")
        dee_on_synapse = _query(sam, dee.user_id)
        assert (
            f"ed25519:{public(dee_cross.self_signing)}"
            in (dee_on_synapse["device_keys"][dee.user_id][dee.device_id]["signatures"][dee.user_id])
        )
        assert dee.user_id not in dee_on_synapse.get("user_signing_keys", {})

        # Sam resets his identity (Synapse asks for his password): Dagma hears of the new master
        # key, and Dee's verification of the old one is gone.
        new_cross = CrossSigningKeys(sam.user_id)
        first = sam.post("/keys/device_signing/upload", new_cross.upload_body(), expect=401).json
        sam.post(
            "/keys/device_signing/upload",
            {**new_cross.upload_body(), "auth": {
                "type": "m.login.password", "session": first["session"], "password": PASSWORD,
                "identifier": {"type": "m.id.user", "user": sam.user_id},
            }},
        )  # fmt: skip
        _wait_for(
            lambda: (
                list(_query(dee, sam.user_id or "")["master_keys"][sam.user_id]["keys"])
                == [f"ed25519:{new_cross.master_id}"]
            ),
            "Sam's new master key on Dagma",
        )
        assert dee.user_id not in _master_signatures(_query(dee, sam.user_id), sam.user_id)
        assert dagma.query(
            "SELECT count(*) FROM e2e_cross_signing_signatures WHERE target_user_id = %s", (sam.user_id,)
        ) == [(0,)]
        assert sam_device.device_id == sam.device_id
    finally:
        for client in clients:
            client.close()

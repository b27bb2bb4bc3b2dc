"""matrix-js-sdk (Element's SDK, with its Rust crypto compiled to WebAssembly) against a live server.

The journey lives in ``tests/js/e2ee.mjs`` (run by ``tests.support.js``).
"""

from __future__ import annotations

import itertools
import secrets

import pytest

from tests.support.client import MatrixClient
from tests.support.js import PASSWORD, install, run_journey


@pytest.mark.slow
def test_js_sdk_rust_crypto_encrypts_cross_signs_resets_and_backs_up_keys(dagma_server) -> None:
    install()
    users = []
    for name in ("alice", "bob"):
        client = MatrixClient(dagma_server.base_url).register(f"js{name}{secrets.token_hex(4)}", PASSWORD)
        users.append(client)
    alice, bob = users
    result = run_journey(
        "e2ee.mjs", base_url=dagma_server.base_url, alice=str(alice.user_id), bob=str(bob.user_id)
    )

    # Olm + Megolm: Bob's client decrypted what Alice's client encrypted.
    assert result["message"] == {"wireType": "m.room.encrypted", "type": "m.room.message",
                                 "body": "hello from js-sdk", "failure": None}  # fmt: skip

    # Cross-signing: bootstrapped (no UIA for a first upload); the client trusts its
    # own identity and device as the server serves them back.
    cross = result["crossSigning"]
    assert cross["status"]["publicKeysOnDevice"] is True
    assert all(cross["status"]["privateKeysCachedLocally"].values())
    assert cross["ready"] is True
    assert cross["ownDeviceVerified"] is True
    assert cross["bobSeesAliceDevices"], cross
    assert result["secretStorage"]["ready"] is True
    # Reset three times in a row with the CPU loaded (issue #15), each through password UIA:
    # each time the client was ready again within 15 s, trusts its own device, has the new
    # private keys in secret storage, and holds the master key the server serves.
    resets = cross["resets"]
    assert len(resets) == 3
    for before, after in itertools.pairwise(resets):
        assert after["firstMaster"] == before["secondMaster"]
    for reset in resets:
        assert reset["ready"] is True and reset["readyMs"] < 15_000, resets
        assert reset["ownDeviceVerified"] is True, resets
        assert reset["secretStorageReady"] is True, resets
        assert reset["firstMaster"] != reset["secondMaster"], resets
        assert reset["clientMaster"] == reset["secondMaster"], resets
    # The server serves what the client uploaded last: alice's master key, her device signed
    # by her self-signing key (and by no earlier one), her user-signing key to her only.
    mine = alice.post("/keys/query", {"device_keys": {alice.user_id: []}}, spec="/keys/query").json
    master = mine["master_keys"][alice.user_id]
    assert list(master["keys"].values()) == [resets[-1]["secondMaster"]]
    ssk = next(iter(mine["self_signing_keys"][alice.user_id]["keys"]))
    signed_devices = [
        d
        for d, keys in mine["device_keys"][alice.user_id].items()
        if ssk in keys["signatures"][alice.user_id]
    ]
    assert signed_devices, mine["device_keys"]
    for device_id in signed_devices:
        assert set(mine["device_keys"][alice.user_id][device_id]["signatures"][alice.user_id]) == {
            f"ed25519:{device_id}",
            ssk,
        }
    assert alice.user_id in mine["user_signing_keys"]
    theirs = bob.post("/keys/query", {"device_keys": {alice.user_id: []}}, spec="/keys/query").json
    assert alice.user_id not in theirs.get("user_signing_keys", {})

    # Key backup: the room key went into a new backup and a new device restored it.
    backup = result["backup"]
    assert backup["version"] == backup["serverVersion"]
    assert backup["count"] >= 1
    assert backup["imported"] >= 1
    assert backup["laptopBody"] == "hello from js-sdk"
    stored = alice.get("/room_keys/keys", params={"version": backup["version"]}, spec="/room_keys/keys").json
    assert stored["rooms"], stored
    for client in users:
        client.close()

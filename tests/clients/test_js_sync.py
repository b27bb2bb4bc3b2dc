"""matrix-js-sdk (Element's SDK) stays in sync with Dagma: invites, local echo, typing, receipts,
unread counts per room and per thread, account data, tags, push rules and to-device messages
(journey in ``tests/js/sync.mjs``)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from typing import Any

import pytest

from tests.clients.test_js_sdk import JS_DIR, NODE, PASSWORD, _install
from tests.support.client import MatrixClient


def _run(base_url: str, alice: str, bob: str) -> dict[str, Any]:
    args = json.dumps({"baseUrl": base_url, "alice": alice, "bob": bob, "password": PASSWORD})
    proc = subprocess.run(
        [str(NODE), "sync.mjs", args],
        cwd=JS_DIR, capture_output=True, text=True, timeout=300, env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from sync.mjs (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert proc.returncode == 0 and "error" not in result, f"{result}\n{proc.stderr[-4000:]}"
    return result


@pytest.mark.slow
def test_js_sdk_stays_in_sync_typing_receipts_unread_counts_account_data_to_device(dagma_server) -> None:
    _install()
    alice, bob = (
        MatrixClient(dagma_server.base_url).register(f"jss{name}{secrets.token_hex(4)}", PASSWORD)
        for name in ("a", "b")
    )
    result = _run(dagma_server.base_url, str(alice.user_id), str(bob.user_id))
    assert result["pushRulesFromSync"] == [".m.rule.master", ".m.rule.suppress_notices"]
    assert result["inviteName"] == "js sync room"
    assert result["aliceCopies"] == 1  # the local echo was matched through unsigned.transaction_id
    assert result["unreadBefore"] == {"room": 2, "thread": 1}  # two in the main timeline, one in the thread
    assert result["accountData"] == {"theme": "dark"}
    assert result["tags"] == {"m.favourite": {"order": 0.5}}
    assert result["masterEnabled"] is True
    assert result["toDevice"] == {"n": 1}

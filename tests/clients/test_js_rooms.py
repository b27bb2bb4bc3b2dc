"""matrix-js-sdk (Element's SDK) through everyday chat against a live server (journey in ``tests/js/rooms.mjs``)."""

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
        [str(NODE), "rooms.mjs", args],
        cwd=JS_DIR, capture_output=True, text=True, timeout=300, env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from rooms.mjs (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert proc.returncode == 0 and "error" not in result, f"{result}\n{proc.stderr[-4000:]}"
    return result


@pytest.mark.slow
def test_js_sdk_chats_paginates_edits_reacts_threads_and_redacts(dagma_server) -> None:
    _install()
    alice, bob = (
        MatrixClient(dagma_server.base_url).register(f"jsr{name}{secrets.token_hex(4)}", PASSWORD)
        for name in ("a", "b")
    )
    result = _run(dagma_server.base_url, str(alice.user_id), str(bob.user_id))
    assert result["scrollback"] == [f"m{i}" for i in range(12)]
    assert result["reactionKeys"] == ["👍"]
    assert result["threadReplies"] == [result["replyId"]]
    assert result["bundled"] == {"threadCount": 1, "editId": result["editId"]}
    assert result["redacted"] == {"content": {}, "because": bob.user_id}
    assert result["topic"] == "chat"
    assert result["joinedMembers"] == sorted([str(alice.user_id), str(bob.user_id)])
    assert result["inDirectory"] is True

"""matrix-js-sdk (Element's SDK) through everyday chat against a live server (journey in ``tests/js/rooms.mjs``)."""

from __future__ import annotations

import secrets

import pytest

from tests.support.client import MatrixClient
from tests.support.js import PASSWORD, install, run_journey


@pytest.mark.slow
def test_js_sdk_chats_paginates_edits_reacts_threads_and_redacts(dagma_server) -> None:
    install()
    alice, bob = (
        MatrixClient(dagma_server.base_url).register(f"jsr{name}{secrets.token_hex(4)}", PASSWORD)
        for name in ("a", "b")
    )
    result = run_journey(
        "rooms.mjs", base_url=dagma_server.base_url, alice=str(alice.user_id), bob=str(bob.user_id)
    )
    assert result["preview"] == [True, "js room", "chat", 1, "leave"]
    assert result["scrollback"] == [f"m{i}" for i in range(12)]
    assert result["reactionKeys"] == ["👍"]
    assert result["threadReplies"] == [result["replyId"]]
    assert result["bundled"] == {"threadCount": 1, "editId": result["editId"]}
    assert result["redacted"] == {"content": {}, "because": bob.user_id}
    assert result["topic"] == "chat"
    assert result["joinedMembers"] == sorted([str(alice.user_id), str(bob.user_id)])
    assert result["inDirectory"] is True
    assert result["pushers"] == [
        ["org.example.js", "js-pushkey", "https://push.example.org/_matrix/push/v1/notify"]
    ]
    assert result["pushersAfterDelete"] == 0
    assert result["protocols"] == {}
    # Word prefixes match (as in Synapse), equal ranks newest first.
    assert result["searchBodies"] == ["m11", "m10", "m1"] and result["searchHighlights"] == ["m1"]
    assert result["hierarchy"] == [["space", "m.space"], ["room", None]]

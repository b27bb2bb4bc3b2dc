"""matrix-js-sdk (Element's SDK) stays in sync with Dagma: invites, local echo, typing, receipts,
unread counts per room and per thread, account data, tags, push rules and to-device messages
(journey in ``tests/js/sync.mjs``)."""

from __future__ import annotations

import secrets

import pytest

from tests.support.client import MatrixClient
from tests.support.js import PASSWORD, install, run_journey


@pytest.mark.slow
def test_js_sdk_stays_in_sync_typing_receipts_unread_counts_account_data_to_device(dagma_server) -> None:
    install()
    alice, bob = (
        MatrixClient(dagma_server.base_url).register(f"jss{name}{secrets.token_hex(4)}", PASSWORD)
        for name in ("a", "b")
    )
    result = run_journey(
        "sync.mjs", base_url=dagma_server.base_url, alice=str(alice.user_id), bob=str(bob.user_id)
    )
    assert result["pushRulesFromSync"] == [".m.rule.master", ".m.rule.suppress_notices"]
    assert result["inviteName"] == "js sync room"
    assert result["aliceCopies"] == 1  # the local echo was matched through unsigned.transaction_id
    assert result["unreadBefore"] == {"room": 2, "thread": 1}  # two in the main timeline, one in the thread
    assert result["accountData"] == {"theme": "dark"}
    assert result["tags"] == {"m.favourite": {"order": 0.5}}
    assert result["masterEnabled"] is True
    assert result["toDevice"] == {"n": 1}

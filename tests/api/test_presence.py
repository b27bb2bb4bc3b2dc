"""Presence against a live server: the status API and presence in ``/sync``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_sync import sync, uid
from tests.support.client import q

STATUS = "/presence/{userId}/status"


def presence_of(body: dict[str, Any], user_id: str) -> dict[str, Any] | None:
    for e in body.get("presence", {}).get("events", []):
        if e["sender"] == user_id:
            assert e["type"] == "m.presence"
            return e["content"]
    return None


def test_set_and_get_own_presence_with_status_message(make_client) -> None:
    alice = make_client()
    alice.put(
        f"/presence/{q(uid(alice))}/status",
        {"presence": "unavailable", "status_msg": "lunch"},
        spec=STATUS,
    )
    r = alice.get(f"/presence/{q(uid(alice))}/status", spec=STATUS).json
    assert r["presence"] == "unavailable" and r["status_msg"] == "lunch"
    assert r["last_active_ago"] >= 0
    alice.put(f"/presence/{q(uid(alice))}/status", {"presence": "online"}, spec=STATUS)
    r = alice.get(f"/presence/{q(uid(alice))}/status", spec=STATUS).json
    assert r["presence"] == "online" and r["currently_active"] is True


def test_presence_reaches_users_sharing_a_room_only(make_client) -> None:
    alice, bob, carol = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    b_first, c_first = sync(bob, set_presence="offline"), sync(carol, set_presence="offline")
    alice.put(f"/presence/{q(uid(alice))}/status", {"presence": "online", "status_msg": "here"})
    seen = presence_of(sync(bob, b_first["next_batch"], set_presence="offline"), alice.user_id)
    assert seen is not None and seen["presence"] == "online" and seen["status_msg"] == "here"
    assert presence_of(sync(carol, c_first["next_batch"], set_presence="offline"), alice.user_id) is None
    # Carol shares no room with alice: her presence is not for carol to see.
    r = carol.get(f"/presence/{q(uid(alice))}/status", expect=403, spec=STATUS)
    assert r.json["errcode"] == "M_FORBIDDEN"
    assert bob.get(f"/presence/{q(uid(alice))}/status", spec=STATUS).json["presence"] == "online"


def test_syncing_marks_the_user_online_unless_told_otherwise(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    sync(alice, set_presence="offline")
    assert bob.get(f"/presence/{q(uid(alice))}/status").json["presence"] == "offline"
    sync(alice, set_presence="unavailable")
    assert bob.get(f"/presence/{q(uid(alice))}/status").json["presence"] == "unavailable"
    sync(alice)
    assert bob.get(f"/presence/{q(uid(alice))}/status").json["presence"] == "online"
    initial = sync(bob, set_presence="offline")
    assert presence_of(initial, alice.user_id)["presence"] == "online"  # type: ignore[index]


def test_bad_presence_values_and_other_users_are_refused(make_client) -> None:
    alice, bob = make_client(), make_client()
    r = alice.put(f"/presence/{q(uid(alice))}/status", {"presence": "busy"}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = alice.put(f"/presence/{q(uid(bob))}/status", {"presence": "online"}, expect=403)
    assert r.json["errcode"] == "M_FORBIDDEN"
    r = alice.get(f"/presence/{q('@nobody:localhost')}/status", expect=404, spec=STATUS)
    assert r.json["errcode"] == "M_NOT_FOUND"
    alice.put(f"/presence/{q(uid(alice))}/status", {"presence": "offline"}, spec=STATUS)


def test_presence_disabled_by_config_is_never_sent(tmp_path) -> None:
    from tests.support.client import MatrixClient
    from tests.support.live import LiveServer

    server = LiveServer(tmp_path, config={"presence": {"enabled": False}}).start()
    try:
        alice = MatrixClient(server.base_url).register()
        bob = MatrixClient(server.base_url).register()
        room = alice.create_room(preset="public_chat")
        bob.join(room)
        alice.put(f"/presence/{q(uid(alice))}/status", {"presence": "online"}, spec=STATUS)
        body = sync(bob)
        assert "presence" not in body
        assert bob.get(f"/presence/{q(uid(alice))}/status").json["presence"] == "offline"
    finally:
        server.destroy()


@pytest.mark.django_db
def test_users_who_stop_syncing_go_offline_and_others_hear_it() -> None:
    from dagcore.actions.presence import OFFLINE_AFTER_MS, do_sync_presence, expire_presence
    from dagcore.clock import now_ms
    from dagcore.store import presence as presence_store
    from dagcore.store.streams import get_stream_position
    from tests.actions.roomkit import make_user

    alice, bob = make_user(), make_user()
    do_sync_presence(user_id=alice.user_id, set_presence=None)
    do_sync_presence(user_id=bob.user_id, set_presence=None)
    before = get_stream_position("presence")
    # A sync again changes nothing anybody sees: the stream stays.
    do_sync_presence(user_id=alice.user_id, set_presence=None)
    assert get_stream_position("presence") == before
    # Long after bob's last sync (alice kept syncing), only bob goes offline.
    later = now_ms() + OFFLINE_AFTER_MS + 1000
    presence_store.touch_last_sync(user_id=alice.user_id, ts=later)
    assert expire_presence(now=later) == 1
    assert presence_store.get_presence(bob.user_id).state == "offline"  # type: ignore[union-attr]
    assert presence_store.get_presence(alice.user_id).state == "online"  # type: ignore[union-attr]
    assert get_stream_position("presence") == before + 1
    assert expire_presence(now=later) == 0

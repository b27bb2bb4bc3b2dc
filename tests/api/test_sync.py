"""``GET /sync`` against a live server: initial and incremental syncs, filters, long-polls,
room sections, lazy-loading, unread counts. Every answer is validated against sync.yaml."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.support.client import MatrixClient, q
from tests.support.live import wait_for_waiters

SYNC = "/sync"


def sync(c: MatrixClient, since: str | None = None, timeout: int = 0, **params: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"timeout": timeout, **params}
    if since:
        p["since"] = since
    for key, value in list(p.items()):
        if isinstance(value, dict):
            p[key] = json.dumps(value)
        elif isinstance(value, bool):
            p[key] = "true" if value else "false"
    result: dict[str, Any] = c.get(SYNC, params=p, spec=SYNC).json
    return result


def uid(client: MatrixClient) -> str:
    assert client.user_id is not None
    return client.user_id


def timeline(body: dict[str, Any], room_id: str, section: str = "join") -> list[dict[str, Any]]:
    return body.get("rooms", {}).get(section, {}).get(room_id, {}).get("timeline", {}).get("events", [])


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"].get("body") for e in events if e["type"] == "m.room.message"]


def two_in_a_public_room(make_client: Callable[[], MatrixClient]) -> tuple[MatrixClient, MatrixClient, str]:
    """Alice, Bob and Alice's new public room, which Bob has joined."""
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    return alice, bob, room


def unread(body: dict[str, Any], room_id: str) -> dict[str, int]:
    """The room's ``unread_notifications`` in a sync answer (the room must be joined)."""
    counts: dict[str, int] = body["rooms"]["join"][room_id]["unread_notifications"]
    return counts


# --------------------------------------------------------------------------- initial and incremental


def test_initial_sync_shows_joined_room_with_state_timeline_and_summary(make_client) -> None:
    alice = make_client()
    room = alice.create_room(name="Initial", preset="private_chat")
    alice.send(room, "hello")
    body = sync(alice)
    entry = body["rooms"]["join"][room]
    assert "hello" in bodies(entry["timeline"]["events"])
    state_types = {e["type"] for e in entry["state"]["events"]} | {
        e["type"] for e in entry["timeline"]["events"]
    }
    assert {"m.room.create", "m.room.member", "m.room.name"} <= state_types
    assert entry["summary"]["m.joined_member_count"] == 1
    assert entry["timeline"]["prev_batch"]
    assert entry["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}
    assert body["next_batch"]
    # The user's push rules come with the initial sync (spec: "Push Rules: Events").
    types = [e["type"] for e in body["account_data"]["events"]]
    assert "m.push_rules" in types


def test_incremental_sync_returns_only_new_events_and_no_state(make_client) -> None:
    alice = make_client()
    room = alice.create_room()
    first = sync(alice)
    alice.send(room, "after")
    body = sync(alice, first["next_batch"])
    entry = body["rooms"]["join"][room]
    assert bodies(entry["timeline"]["events"]) == ["after"]
    assert entry["timeline"]["limited"] is False
    assert entry["state"]["events"] == []


def test_incremental_sync_with_nothing_new_omits_quiet_rooms(make_client) -> None:
    alice = make_client()
    alice.create_room()
    first = sync(alice)
    body = sync(alice, first["next_batch"])
    assert "join" not in body.get("rooms", {})


def test_own_events_carry_the_transaction_id_of_the_sending_device(make_client) -> None:
    alice = make_client()
    room = alice.create_room()
    first = sync(alice)
    alice.put(f"/rooms/{q(room)}/send/m.room.message/txn-sync-1", {"msgtype": "m.text", "body": "x"})
    events = timeline(sync(alice, first["next_batch"]), room)
    assert events[-1]["unsigned"]["transaction_id"] == "txn-sync-1"


def test_limited_timeline_has_prev_batch_usable_with_messages(make_client) -> None:
    alice = make_client()
    room = alice.create_room()
    first = sync(alice)
    for i in range(6):
        alice.send(room, f"m{i}")
    body = sync(alice, first["next_batch"], filter={"room": {"timeline": {"limit": 3}}})
    entry = body["rooms"]["join"][room]
    assert entry["timeline"]["limited"] is True
    assert bodies(entry["timeline"]["events"]) == ["m3", "m4", "m5"]
    older = alice.get(
        f"/rooms/{q(room)}/messages",
        params={"from": entry["timeline"]["prev_batch"], "dir": "b", "limit": 3},
        spec="/rooms/{roomId}/messages",
    ).json
    assert bodies(older["chunk"]) == ["m2", "m1", "m0"]


def test_limited_sync_sends_the_state_changed_in_the_gap(make_client) -> None:
    alice = make_client()
    room = alice.create_room(name="before")
    first = sync(alice)
    alice.put(f"/rooms/{q(room)}/state/m.room.name", {"name": "during the gap"})
    for i in range(4):
        alice.send(room, f"m{i}")
    body = sync(alice, first["next_batch"], filter={"room": {"timeline": {"limit": 2}}})
    entry = body["rooms"]["join"][room]
    names = [e["content"]["name"] for e in entry["state"]["events"] if e["type"] == "m.room.name"]
    assert names == ["during the gap"]
    assert entry["timeline"]["limited"] is True


def test_invalid_since_token_and_timeout_are_refused(make_client) -> None:
    alice = make_client()
    assert alice.get(SYNC, params={"since": "garbage"}, expect=400).json["errcode"] == "M_INVALID_PARAM"
    assert alice.get(SYNC, params={"timeout": "soon"}, expect=400).json["errcode"] == "M_INVALID_PARAM"
    assert alice.get(SYNC, params={"set_presence": "away"}, expect=400).json["errcode"] == "M_INVALID_PARAM"
    sync(alice)  # the permitted control


def test_sync_needs_an_access_token(dagma_server) -> None:
    anon = MatrixClient(dagma_server.base_url)
    r = anon.get(SYNC, expect=401)
    assert r.json["errcode"] == "M_MISSING_TOKEN"


# --------------------------------------------------------------------------- long-poll


def test_long_poll_with_nothing_new_returns_after_timeout_with_a_reusable_token(make_client) -> None:
    alice = make_client()
    alice.create_room()
    first = sync(alice)
    started = time.monotonic()
    body = sync(alice, first["next_batch"], timeout=700)
    elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 5
    assert "join" not in body.get("rooms", {})
    # It followed its answer (tribune.sync.answered) and built nothing before waiting: the
    # answer at the timeout is built then, key counts included.
    assert "device_one_time_keys_count" in body
    again = sync(alice, body["next_batch"])  # the token works again
    assert "next_batch" in again


def test_long_poll_wakes_up_when_a_message_arrives(make_client) -> None:
    alice = make_client()
    room = alice.create_room()
    first = sync(alice)
    result: dict[str, Any] = {}

    def poll() -> None:
        started = time.monotonic()
        result["body"] = sync(alice, first["next_batch"], timeout=20000)
        result["elapsed"] = time.monotonic() - started

    t = threading.Thread(target=poll)
    t.start()
    wait_for_waiters(alice.base_url, uid(alice))  # the poll waits: only a wake-up can answer it now
    other = MatrixClient(alice.base_url, alice.access_token)
    other.send(room, "wake up")
    t.join(15)
    assert not t.is_alive(), "the long-poll was not woken"
    assert result["elapsed"] < 5
    assert bodies(timeline(result["body"], room)) == ["wake up"]


def test_full_state_returns_state_of_quiet_rooms_at_once(make_client) -> None:
    alice = make_client()
    room = alice.create_room(name="quiet")
    first = sync(alice)
    started = time.monotonic()
    body = sync(alice, first["next_batch"], timeout=5000, full_state=True)
    assert time.monotonic() - started < 3
    state_types = {e["type"] for e in body["rooms"]["join"][room]["state"]["events"]}
    assert "m.room.name" in state_types


# --------------------------------------------------------------------------- invites, joins, leaves


def test_invite_appears_with_stripped_state_and_the_invite_event(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(name="Invite me")
    bob_first = sync(bob)
    alice.post(f"/rooms/{q(room)}/invite", {"user_id": bob.user_id})
    body = sync(bob, bob_first["next_batch"])
    events = body["rooms"]["invite"][room]["invite_state"]["events"]
    member = [e for e in events if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert member and member[0]["content"]["membership"] == "invite" and member[0]["sender"] == alice.user_id
    assert any(e["type"] == "m.room.name" and e["content"]["name"] == "Invite me" for e in events)


def test_newly_joined_room_comes_with_full_state(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat", name="Join me")
    alice.send(room, "before bob")
    bob_first = sync(bob)
    bob.join(room)
    body = sync(bob, bob_first["next_batch"], filter={"room": {"timeline": {"limit": 2}}})
    entry = body["rooms"]["join"][room]
    state_types = {e["type"] for e in entry["state"]["events"]}
    # The state before the timeline, though none of it changed since bob's last sync.
    assert {"m.room.create", "m.room.name", "m.room.power_levels"} <= state_types
    assert entry["summary"]["m.joined_member_count"] == 2
    assert entry["timeline"]["events"][-1]["state_key"] == bob.user_id


def test_kick_moves_the_room_to_leave_with_the_kick_event(make_client) -> None:
    alice, bob, room = two_in_a_public_room(make_client)
    bob_first = sync(bob)
    alice.post(f"/rooms/{q(room)}/kick", {"user_id": bob.user_id, "reason": "bye"})
    alice.send(room, "bob cannot see this")
    body = sync(bob, bob_first["next_batch"])
    assert room not in body["rooms"].get("join", {})
    events = timeline(body, room, "leave")
    kick = [e for e in events if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert kick[-1]["content"]["membership"] == "leave" and kick[-1]["sender"] == alice.user_id
    assert "bob cannot see this" not in bodies(events)


def test_left_rooms_appear_in_initial_sync_only_with_include_leave(make_client) -> None:
    _alice, bob, room = two_in_a_public_room(make_client)
    bob.post(f"/rooms/{q(room)}/leave")
    assert room not in sync(bob).get("rooms", {}).get("leave", {})
    body = sync(bob, filter={"room": {"include_leave": True}})
    assert room in body["rooms"]["leave"]


# --------------------------------------------------------------------------- filters


def test_stored_filter_limits_the_timeline(make_client) -> None:
    alice = make_client()
    room = alice.create_room()
    for i in range(3):
        alice.send(room, f"f{i}")
    filter_id = alice.post(
        f"/user/{q(uid(alice))}/filter",
        {"room": {"timeline": {"limit": 1, "types": ["m.room.message"]}}},
        spec="/user/{userId}/filter",
    ).json["filter_id"]
    entry = sync(alice, filter=filter_id)["rooms"]["join"][room]
    assert bodies(entry["timeline"]["events"]) == ["f2"]
    assert entry["timeline"]["limited"] is True


def test_unknown_filter_id_and_bad_inline_filter_are_refused(make_client) -> None:
    alice = make_client()
    assert alice.get(SYNC, params={"filter": "999999999"}, expect=400).json["errcode"] == "M_INVALID_PARAM"
    r = alice.get(SYNC, params={"filter": '{"room": {"timeline": {"limit": "ten"}}}'}, expect=400)
    assert r.json["errcode"] == "M_BAD_JSON"
    sync(alice, filter={"room": {"timeline": {"limit": 10}}})


def test_timeline_filter_with_wildcard_types_and_not_senders(make_client) -> None:
    alice, bob, room = two_in_a_public_room(make_client)
    first = sync(alice)
    alice.send(room, "from alice")
    bob.send(room, "from bob")
    alice.put(f"/rooms/{q(room)}/state/m.room.topic", {"topic": "t"})
    f = {"room": {"timeline": {"types": ["m.room.mess*"], "not_senders": [bob.user_id]}}}
    events = timeline(sync(alice, first["next_batch"], filter=f), room)
    assert bodies(events) == ["from alice"]
    assert all(e["type"] == "m.room.message" for e in events)


def test_event_fields_keeps_only_the_listed_fields(make_client) -> None:
    alice = make_client()
    room = alice.create_room()
    alice.send(room, "fields")
    f = {"event_fields": ["type", "content.body"], "room": {"timeline": {"types": ["m.room.message"]}}}
    body = alice.get(SYNC, params={"filter": json.dumps(f)}).json
    events = body["rooms"]["join"][room]["timeline"]["events"]
    assert events == [{"type": "m.room.message", "content": {"body": "fields"}}]


# --------------------------------------------------------------------------- lazy-loading members


def test_lazy_loading_sends_only_members_of_timeline_senders_and_self(make_client) -> None:
    alice, bob, carol = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat", name="named, so no heroes are needed")
    bob.join(room)
    carol.join(room)
    for i in range(3):
        bob.send(room, f"b{i}")
    f = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 2}}}
    entry = sync(alice, filter=f)["rooms"]["join"][room]
    members = {e["state_key"] for e in entry["state"]["events"] if e["type"] == "m.room.member"}
    assert bob.user_id in members and alice.user_id in members
    assert carol.user_id not in members
    # Without lazy-loading every member is there.
    entry = sync(alice, filter={"room": {"timeline": {"limit": 2}}})["rooms"]["join"][room]
    members = {e["state_key"] for e in entry["state"]["events"] if e["type"] == "m.room.member"}
    assert {alice.user_id, bob.user_id, carol.user_id} <= members


def test_unnamed_room_has_heroes_whose_members_lazy_loading_includes(make_client) -> None:
    alice, bob, carol = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    bob.send(room, "hi")
    f = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}}
    entry = sync(alice, filter=f)["rooms"]["join"][room]
    assert entry["summary"]["m.heroes"] == [bob.user_id, carol.user_id]
    members = {e["state_key"] for e in entry["state"]["events"] if e["type"] == "m.room.member"}
    assert {alice.user_id, bob.user_id, carol.user_id} <= members
    named = alice.create_room(name="Named")
    assert "m.heroes" not in sync(alice)["rooms"]["join"][named]["summary"]


def test_lazy_loading_does_not_repeat_members_the_device_already_has(make_client) -> None:
    alice, bob, room = two_in_a_public_room(make_client)
    bob.send(room, "one")
    f = {"room": {"state": {"lazy_load_members": True}}}
    first = sync(alice, filter=f)
    bob.send(room, "two")
    entry = sync(alice, first["next_batch"], filter=f)["rooms"]["join"][room]
    assert [e for e in entry["state"]["events"] if e["type"] == "m.room.member"] == []
    redundant = {"room": {"state": {"lazy_load_members": True, "include_redundant_members": True}}}
    entry = sync(alice, first["next_batch"], filter=redundant)["rooms"]["join"][room]
    assert {e["state_key"] for e in entry["state"]["events"] if e["type"] == "m.room.member"} == {bob.user_id}


# --------------------------------------------------------------------------- unread counts


def test_unread_counts_follow_messages_mentions_and_the_read_receipt(make_client) -> None:
    alice, bob, room = two_in_a_public_room(make_client)
    first = sync(alice)
    bob.send(room, "one")
    last = bob.send(
        room,
        content={"msgtype": "m.text", "body": "hey alice", "m.mentions": {"user_ids": [alice.user_id]}},
    )
    body = sync(alice, first["next_batch"])
    assert unread(body, room) == {"notification_count": 2, "highlight_count": 1}
    alice.post(
        f"/rooms/{q(room)}/receipt/m.read/{q(last)}",
        {},
        spec="/rooms/{roomId}/receipt/{receiptType}/{eventId}",
    )
    body = sync(alice, body["next_batch"])
    assert unread(body, room) == {"notification_count": 0, "highlight_count": 0}


def test_own_messages_and_notices_do_not_count_as_unread(make_client) -> None:
    alice, bob, room = two_in_a_public_room(make_client)
    first = sync(alice)
    alice.send(room, "mine")
    bob.send(room, content={"msgtype": "m.notice", "body": "bot says"})
    bob.send(room, "counted")
    body = sync(alice, first["next_batch"])
    assert unread(body, room)["notification_count"] == 1


def test_thread_notifications_are_split_per_thread_when_asked(make_client) -> None:
    alice, bob, room = two_in_a_public_room(make_client)
    root = alice.send(room, "root")
    first = sync(alice)
    bob.send(room, "main reply")
    bob.send(
        room,
        content={
            "msgtype": "m.text",
            "body": "in thread",
            "m.relates_to": {"rel_type": "m.thread", "event_id": root},
        },
    )
    f = {"room": {"timeline": {"unread_thread_notifications": True}}}
    entry = sync(alice, first["next_batch"], filter=f)["rooms"]["join"][room]
    assert entry["unread_notifications"]["notification_count"] == 1
    assert entry["unread_thread_notifications"][root]["notification_count"] == 1
    plain = sync(alice, first["next_batch"])["rooms"]["join"][room]
    assert plain["unread_notifications"]["notification_count"] == 2


def test_sending_a_message_reads_everything_before_it(make_client) -> None:
    alice, bob, room = two_in_a_public_room(make_client)
    first = sync(alice)
    bob.send(room, "one")
    bob.send(room, "two")
    body = sync(alice, first["next_batch"])
    assert unread(body, room)["notification_count"] == 2
    alice.send(room, "my reply")  # spec: sending an event marks what precedes it as read
    bob.send(room, "three")
    body = sync(alice, body["next_batch"])
    assert unread(body, room)["notification_count"] == 1


# --------------------------------------------------------------------------- visibility, knocks, device lists


def test_joined_history_visibility_hides_events_before_the_join(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    alice.put(f"/rooms/{q(room)}/state/m.room.history_visibility", {"history_visibility": "joined"})
    alice.send(room, "before bob")
    bob.join(room)
    alice.send(room, "after bob")
    events = timeline(sync(bob), room)
    assert bodies(events) == ["after bob"]
    # The control: alice, joined all along, sees both.
    assert bodies(timeline(sync(alice), room)) == ["before bob", "after bob"]


def test_knock_appears_in_the_knock_section_with_stripped_state(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(
        name="Knock here", initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]
    )
    first = sync(bob)
    bob.post(f"/knock/{q(room)}", {"reason": "let me in"})
    body = sync(bob, first["next_batch"])
    events = body["rooms"]["knock"][room]["knock_state"]["events"]
    assert any(e["type"] == "m.room.member" and e["content"]["membership"] == "knock" for e in events)
    assert any(e["type"] == "m.room.name" for e in events)


def test_device_list_changes_reach_users_sharing_a_room_and_leavers_are_reported(make_client) -> None:
    from tests.support.e2e_keys import DeviceKeys

    alice, bob, carol = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    a_first, c_first = sync(alice), sync(carol)
    assert bob.device_id is not None
    bob.post("/keys/upload", {"device_keys": DeviceKeys(uid(bob), bob.device_id).device_keys()})
    body = sync(alice, a_first["next_batch"])
    assert uid(bob) in body["device_lists"]["changed"]
    assert "device_lists" not in sync(carol, c_first["next_batch"])  # shares no room with bob
    bob.post(f"/rooms/{q(room)}/leave")
    body = sync(alice, body["next_batch"])
    assert body["device_lists"]["left"] == [uid(bob)]
    # A new member's devices are new to alice: "changed".
    carol.join(room)
    body = sync(alice, body["next_batch"])
    assert uid(carol) in body["device_lists"]["changed"]

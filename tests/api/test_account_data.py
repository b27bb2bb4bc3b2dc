"""Account data and room tags against a live server, seen through ``/sync``."""

from __future__ import annotations

from typing import Any

from tests.api.test_sync import sync, uid
from tests.support.client import q

GLOBAL = "/user/{userId}/account_data/{type}"
ROOM = "/user/{userId}/rooms/{roomId}/account_data/{type}"
TAGS = "/user/{userId}/rooms/{roomId}/tags"
TAG = "/user/{userId}/rooms/{roomId}/tags/{tag}"


def global_events(body: dict[str, Any]) -> dict[str, Any]:
    return {e["type"]: e["content"] for e in body.get("account_data", {}).get("events", [])}


def room_events(body: dict[str, Any], room_id: str) -> dict[str, Any]:
    entry = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return {e["type"]: e["content"] for e in entry.get("account_data", {}).get("events", [])}


def test_global_account_data_round_trips_and_syncs(make_client) -> None:
    alice = make_client()
    first = sync(alice)
    alice.put(f"/user/{q(uid(alice))}/account_data/org.example.config", {"theme": "dark"}, spec=GLOBAL)
    assert alice.get(f"/user/{q(uid(alice))}/account_data/org.example.config", spec=GLOBAL).json == {
        "theme": "dark"
    }
    body = sync(alice, first["next_batch"])
    assert global_events(body)["org.example.config"] == {"theme": "dark"}
    # Replacing it syncs the new content once.
    alice.put(f"/user/{q(uid(alice))}/account_data/org.example.config", {"theme": "light"})
    again = sync(alice, body["next_batch"])
    assert global_events(again) == {"org.example.config": {"theme": "light"}}
    assert "org.example.config" in global_events(sync(alice))


def test_room_account_data_round_trips_and_syncs_in_the_room(make_client) -> None:
    alice = make_client()
    room = alice.create_room()
    first = sync(alice)
    alice.put(f"/user/{q(uid(alice))}/rooms/{q(room)}/account_data/org.example.room", {"x": 1}, spec=ROOM)
    assert alice.get(
        f"/user/{q(uid(alice))}/rooms/{q(room)}/account_data/org.example.room", spec=ROOM
    ).json == {"x": 1}
    body = sync(alice, first["next_batch"])
    assert room_events(body, room) == {"org.example.room": {"x": 1}}
    assert "org.example.room" not in global_events(body)


def test_missing_account_data_is_not_found(make_client) -> None:
    alice = make_client()
    r = alice.get(f"/user/{q(uid(alice))}/account_data/org.example.none", expect=404, spec=GLOBAL)
    assert r.json["errcode"] == "M_NOT_FOUND"
    room = alice.create_room()
    r = alice.get(
        f"/user/{q(uid(alice))}/rooms/{q(room)}/account_data/org.example.none", expect=404, spec=ROOM
    )
    assert r.json["errcode"] == "M_NOT_FOUND"


def test_account_data_of_other_users_is_forbidden(make_client) -> None:
    alice, bob = make_client(), make_client()
    r = alice.put(f"/user/{q(uid(bob))}/account_data/org.example.x", {"a": 1}, expect=403, spec=GLOBAL)
    assert r.json["errcode"] == "M_FORBIDDEN"
    r = alice.get(f"/user/{q(uid(bob))}/account_data/org.example.x", expect=403, spec=GLOBAL)
    assert r.json["errcode"] == "M_FORBIDDEN"
    alice.put(f"/user/{q(uid(alice))}/account_data/org.example.x", {"a": 1}, spec=GLOBAL)


def test_server_managed_types_cannot_be_set(make_client) -> None:
    alice = make_client()
    room = alice.create_room()
    for data_type in ("m.push_rules", "m.fully_read"):
        r = alice.put(f"/user/{q(uid(alice))}/account_data/{data_type}", {}, expect=405, spec=GLOBAL)
        assert r.json["errcode"] == "M_BAD_JSON"
        r = alice.put(
            f"/user/{q(uid(alice))}/rooms/{q(room)}/account_data/{data_type}", {}, expect=405, spec=ROOM
        )
        assert r.json["errcode"] == "M_BAD_JSON"
    # The push rules stay readable as account data.
    assert "override" in alice.get(f"/user/{q(uid(alice))}/account_data/m.push_rules").json["global"]


def test_bad_bodies_and_room_ids_are_refused(make_client) -> None:
    alice = make_client()
    r = alice.put(f"/user/{q(uid(alice))}/account_data/org.example.x", [1, 2], expect=400)
    assert r.json["errcode"] == "M_BAD_JSON"
    r = alice.put(
        f"/user/{q(uid(alice))}/rooms/not-a-room/account_data/org.example.x", {}, expect=400, spec=ROOM
    )
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = alice.get(f"/user/{q(uid(alice))}/rooms/not-a-room/account_data/org.example.x", expect=400, spec=ROOM)
    assert r.json["errcode"] == "M_INVALID_PARAM"


# --------------------------------------------------------------------------- tags


def test_tags_are_added_listed_synced_and_removed(make_client) -> None:
    alice = make_client()
    room = alice.create_room()
    first = sync(alice)
    base = f"/user/{q(uid(alice))}/rooms/{q(room)}/tags"
    assert alice.get(base, spec=TAGS).json == {"tags": {}}
    alice.put(f"{base}/u.work", {"order": 0.5}, spec=TAG)
    alice.put(f"{base}/m.favourite", {}, spec=TAG)
    assert alice.get(base, spec=TAGS).json == {"tags": {"u.work": {"order": 0.5}, "m.favourite": {}}}
    body = sync(alice, first["next_batch"])
    assert room_events(body, room)["m.tag"] == {"tags": {"u.work": {"order": 0.5}, "m.favourite": {}}}
    alice.delete(f"{base}/u.work", spec=TAG)
    assert alice.get(base).json == {"tags": {"m.favourite": {}}}
    body = sync(alice, body["next_batch"])
    assert room_events(body, room)["m.tag"] == {"tags": {"m.favourite": {}}}


def test_tags_of_others_and_bad_orders_are_refused(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room()
    r = bob.put(f"/user/{q(uid(alice))}/rooms/{q(room)}/tags/u.x", {}, expect=403)
    assert r.json["errcode"] == "M_FORBIDDEN"
    r = alice.put(f"/user/{q(uid(alice))}/rooms/{q(room)}/tags/u.x", {"order": "first"}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    alice.put(f"/user/{q(uid(alice))}/rooms/{q(room)}/tags/u.x", {"order": 1}, spec=TAG)


def test_ignored_users_messages_are_hidden_from_sync(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    first = sync(alice)
    alice.put(f"/user/{q(uid(alice))}/account_data/m.ignored_user_list", {"ignored_users": {bob.user_id: {}}})
    bob.send(room, "you do not see me")
    alice.send(room, "you see me")
    body = sync(alice, first["next_batch"])
    events = body["rooms"]["join"][room]["timeline"]["events"]
    assert [e["content"]["body"] for e in events if e["type"] == "m.room.message"] == ["you see me"]

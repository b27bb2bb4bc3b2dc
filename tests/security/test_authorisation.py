"""Class 2 — authorisation: every refused change leaves the room as it was; a permitted twin succeeds."""

from __future__ import annotations

import pytest

from tests.security.kit import (
    STATE,
    assert_error,
    assert_unharmed,
    marker,
    room_dump,
    send_text,
    shared_room,
    txn,
)
from tests.support.client import MatrixClient, q

PL = "/rooms/{roomId}/state/{eventType}/{stateKey}"


def _power(client: MatrixClient, room: str) -> dict:
    return client.get(f"/rooms/{q(room)}/state/m.room.power_levels/", spec=STATE).json


def _set_power(client: MatrixClient, room: str, content: dict, expect: int | None = 200):
    return client.put(f"/rooms/{q(room)}/state/m.room.power_levels/", content, expect=expect)


def _membership(client: MatrixClient, room: str, user_id: str) -> str | None:
    r = client.get(f"/rooms/{q(room)}/state/m.room.member/{q(user_id)}", expect=None)
    return r.json.get("membership") if r.status == 200 else None


@pytest.fixture
def trio(make_client):
    """alice (admin, 100), mod (50), bob (0) in a public room (room version 11)."""
    alice, mod, bob = make_client(), make_client(), make_client()
    room = shared_room(alice, mod, bob, room_version="11")
    power = _power(alice, room)
    power["users"][mod.user_id] = 50
    # Moderators may send power levels: the auth rules must still bound what they change.
    power["events"]["m.room.power_levels"] = 50
    _set_power(alice, room, power)
    return alice, mod, bob, room


def test_a_moderator_cannot_raise_anyone_above_their_own_level(trio) -> None:
    alice, mod, bob, room = trio
    for target, level in ((mod.user_id, 100), (bob.user_id, 51)):
        power = _power(mod, room)
        power["users"][target] = level
        assert_error(_set_power(mod, room, power, expect=None), 403, "M_FORBIDDEN")
    # Nor demote the admin (whose level is above theirs).
    power = _power(mod, room)
    power["users"][alice.user_id] = 0
    assert_error(_set_power(mod, room, power, expect=None), 403, "M_FORBIDDEN")
    assert _power(alice, room)["users"] == {alice.user_id: 100, mod.user_id: 50}
    # Control: up to their own level is allowed.
    power = _power(mod, room)
    power["users"][bob.user_id] = 50
    _set_power(mod, room, power)
    assert _power(alice, room)["users"][bob.user_id] == 50
    assert_unharmed(bob, alice, room)


@pytest.mark.parametrize("action", ["kick", "ban"])
def test_kicking_or_banning_an_equal_or_higher_user_is_refused(trio, make_client, action: str) -> None:
    alice, mod, bob, room = trio
    mod2 = make_client()
    mod2.join(room)
    power = _power(alice, room)
    power["users"][mod2.user_id] = 50
    _set_power(alice, room, power)
    spec = f"/rooms/{{roomId}}/{action}"
    for target in (alice, mod2):
        r = mod.post(f"/rooms/{q(room)}/{action}", {"user_id": target.user_id, "reason": "x"}, expect=None)
        assert_error(r, 403, "M_FORBIDDEN")
        assert _membership(alice, room, target.user_id) == "join"
    r = bob.post(f"/rooms/{q(room)}/{action}", {"user_id": mod.user_id}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    # Control: the moderator removes the ordinary user.
    mod.post(f"/rooms/{q(room)}/{action}", {"user_id": bob.user_id}, spec=spec)
    assert _membership(alice, room, bob.user_id) == ("leave" if action == "kick" else "ban")
    assert_unharmed(mod2, alice, room)


def test_joining_an_invite_only_room_needs_an_invite(make_client) -> None:
    alice, mallory, bob = make_client(), make_client(), make_client()
    room = alice.create_room(preset="private_chat")
    for path in (f"/rooms/{q(room)}/join", f"/join/{q(room)}"):
        assert_error(mallory.post(path, {}, expect=None), 403, "M_FORBIDDEN")
    assert _membership(alice, room, mallory.user_id) is None
    # Control: an invited user joins.
    alice.post(f"/rooms/{q(room)}/invite", {"user_id": bob.user_id}, spec="/rooms/{roomId}/invite")
    bob.post(f"/rooms/{q(room)}/join", {}, spec="/rooms/{roomId}/join")
    assert_unharmed(bob, alice, room)


def test_a_banned_user_cannot_rejoin_until_unbanned(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = shared_room(alice, mallory)
    alice.post(f"/rooms/{q(room)}/ban", {"user_id": mallory.user_id}, spec="/rooms/{roomId}/ban")
    assert_error(mallory.post(f"/rooms/{q(room)}/join", {}, expect=None), 403, "M_FORBIDDEN")
    assert_error(mallory.post(f"/join/{q(room)}", {}, expect=None), 403, "M_FORBIDDEN")
    # A banned user can neither unban themselves nor send.
    assert_error(mallory.post(f"/rooms/{q(room)}/unban", {"user_id": mallory.user_id}, expect=None), 403)
    r = mallory.put(
        f"/rooms/{q(room)}/send/m.room.message/{txn()}", {"msgtype": "m.text", "body": "x"}, expect=None
    )
    assert_error(r, 403, "M_FORBIDDEN")
    assert _membership(alice, room, mallory.user_id) == "ban"
    # Control: after an unban, the join works.
    alice.post(f"/rooms/{q(room)}/unban", {"user_id": mallory.user_id}, spec="/rooms/{roomId}/unban")
    mallory.post(f"/rooms/{q(room)}/join", {}, spec="/rooms/{roomId}/join")
    assert_unharmed(mallory, alice, room)


def test_inviting_needs_the_invite_level(trio, make_client) -> None:
    alice, mod, bob, room = trio
    carol, dave = make_client(), make_client()
    power = _power(alice, room)
    power["invite"] = 50
    _set_power(alice, room, power)
    r = bob.post(f"/rooms/{q(room)}/invite", {"user_id": carol.user_id}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    assert _membership(alice, room, carol.user_id) is None
    # A non-member cannot invite either.
    r = carol.post(f"/rooms/{q(room)}/invite", {"user_id": dave.user_id}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    mod.post(f"/rooms/{q(room)}/invite", {"user_id": carol.user_id}, spec="/rooms/{roomId}/invite")
    assert _membership(alice, room, carol.user_id) == "invite"
    assert_unharmed(bob, alice, room)


@pytest.mark.parametrize("version", ["10", "11"])
def test_a_state_key_naming_another_user_is_refused_even_for_admins(make_client, version: str) -> None:
    alice, bob = make_client(), make_client()
    room = shared_room(alice, bob, room_version=version)
    mark = marker()
    r = alice.put(f"/rooms/{q(room)}/state/m.custom/{q(bob.user_id)}", {"x": mark}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    # Control: a state key that is the sender's own user ID is allowed.
    alice.put(f"/rooms/{q(room)}/state/m.custom/{q(alice.user_id)}", {"x": "mine"}, spec=STATE)
    assert_unharmed(bob, alice, room, absent=mark)


def test_strangers_cannot_delete_or_overwrite_an_alias(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = alice.create_room()
    other = mallory.create_room()
    alias = f"#{marker()}:localhost"
    spec = "/directory/room/{roomAlias}"
    alice.put(f"/directory/room/{q(alias)}", {"room_id": room}, spec=spec)
    assert_error(mallory.delete(f"/directory/room/{q(alias)}", expect=None), 403, "M_FORBIDDEN")
    r = mallory.put(f"/directory/room/{q(alias)}", {"room_id": other}, expect=None)
    assert_error(r, 409, "M_UNKNOWN")
    assert alice.get(f"/directory/room/{q(alias)}", spec=spec).json["room_id"] == room
    # Control: the creator deletes it, then the name is free for anyone.
    alice.delete(f"/directory/room/{q(alias)}", spec=spec)
    mallory.put(f"/directory/room/{q(alias)}", {"room_id": other}, spec=spec)
    assert alice.get(f"/directory/room/{q(alias)}", spec=spec).json["room_id"] == other


def test_receipts_for_rooms_you_are_not_in_are_refused(make_client) -> None:
    alice, bob, mallory = make_client(), make_client(), make_client()
    room = shared_room(alice, bob)
    event_id = alice.send(room, "x")
    spec = "/rooms/{roomId}/receipt/{receiptType}/{eventId}"
    r = mallory.post(f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    r = mallory.post(f"/rooms/{q(room)}/read_markers", {"m.fully_read": event_id}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    bob.post(f"/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {}, spec=spec)
    assert_unharmed(bob, alice, room)


def test_redacting_others_events_needs_the_redact_level(make_client) -> None:
    alice, bob, mallory = make_client(), make_client(), make_client()
    room = shared_room(alice, bob, mallory)
    target = send_text(alice, room, "keep me")
    spec = "/rooms/{roomId}/redact/{eventId}/{txnId}"
    r = mallory.put(f"/rooms/{q(room)}/redact/{q(target)}/{txn()}", {"reason": "x"}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    # Through /send too (m.room.redaction with content.redacts in v11).
    r = mallory.put(f"/rooms/{q(room)}/send/m.room.redaction/{txn()}", {"redacts": target}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    got = bob.get(f"/rooms/{q(room)}/event/{q(target)}").json
    assert got["content"].get("body") == "keep me"
    # Controls: own event, and the admin redacting someone else's.
    own = send_text(mallory, room, "mine")
    mallory.put(f"/rooms/{q(room)}/redact/{q(own)}/{txn()}", {}, spec=spec)
    alice.put(f"/rooms/{q(room)}/redact/{q(own)}/{txn()}", {}, spec=spec)
    bobs = send_text(bob, room, "bob's")
    alice.put(f"/rooms/{q(room)}/redact/{q(bobs)}/{txn()}", {}, spec=spec)
    assert bob.get(f"/rooms/{q(room)}/event/{q(bobs)}").json["content"] == {}
    assert_unharmed(bob, alice, room)


READ_PATHS = [
    ("/rooms/{room}/state", 403),
    ("/rooms/{room}/state/m.room.name/", 403),
    ("/rooms/{room}/messages?dir=b", 403),
    ("/rooms/{room}/members", 403),
    ("/rooms/{room}/joined_members", 403),
    ("/rooms/{room}/event/{event}", 404),
    ("/rooms/{room}/context/{event}", 403),
    ("/_matrix/client/v1/rooms/{room}/relations/{event}", 403),
    ("/_matrix/client/v1/rooms/{room}/threads", 403),
    ("/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts=0&dir=f", 403),
    ("/rooms/{room}/aliases", 403),
]


@pytest.mark.parametrize(("template", "status"), READ_PATHS)
def test_outsiders_read_nothing_of_a_private_room(make_client, template: str, status: int) -> None:
    alice, mallory = make_client(), make_client()
    room = alice.create_room(preset="private_chat", name="secret name")
    event_id = send_text(alice, room, "secret text")
    path = template.format(room=q(room), event=q(event_id))
    r = mallory.get(path, expect=None)
    assert_error(r, status)
    assert "secret" not in r.raw.text
    # Control: the member reads the same path.
    assert alice.get(path, expect=None).status == 200


def test_a_member_sees_no_history_from_before_joining_a_joined_only_room(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}
    ])  # fmt: skip
    before = send_text(alice, room, "before bob")
    bob.join(room)
    after = send_text(alice, room, "after bob")
    chunk = bob.get(
        f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 50}, spec="/rooms/{roomId}/messages"
    ).json["chunk"]
    ids = {e["event_id"] for e in chunk}
    assert after in ids and before not in ids
    assert_error(bob.get(f"/rooms/{q(room)}/event/{q(before)}", expect=None), 404, "M_NOT_FOUND")
    assert_error(bob.get(f"/rooms/{q(room)}/context/{q(before)}", expect=None), 404, "M_NOT_FOUND")


def test_a_room_you_are_still_in_cannot_be_forgotten(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = shared_room(alice, bob)
    r = bob.post(f"/rooms/{q(room)}/forget", {}, expect=None)
    assert_error(r, 400)
    assert room in bob.get("/joined_rooms").json["joined_rooms"]
    assert_unharmed(bob, alice, room)
    # Control: after leaving, forgetting works.
    bob.post(f"/rooms/{q(room)}/leave", {}, spec="/rooms/{roomId}/leave")
    bob.post(f"/rooms/{q(room)}/forget", {}, spec="/rooms/{roomId}/forget")
    assert_error(bob.get(f"/rooms/{q(room)}/messages", params={"dir": "b"}, expect=None), 403)
    assert "secret" not in room_dump(alice, room)


def test_a_redaction_sent_as_a_state_event_needs_the_redact_level_too(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = shared_room(alice, bob)
    power = _power(alice, room)
    power["state_default"] = 0  # bob may send state, but not redact (redact stays 50)
    _set_power(alice, room, power)
    target = send_text(alice, room, "keep me")
    r = bob.put(f"/rooms/{q(room)}/state/m.room.redaction/", {"redacts": target}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    assert alice.get(f"/rooms/{q(room)}/event/{q(target)}").json["content"]["body"] == "keep me"
    # Control: his own event, he may redact (through /redact).
    own = send_text(bob, room, "mine")
    bob.put(f"/rooms/{q(room)}/redact/{q(own)}/{txn()}", {}, spec="/rooms/{roomId}/redact/{eventId}/{txnId}")
    assert alice.get(f"/rooms/{q(room)}/event/{q(own)}").json["content"] == {}
    assert_unharmed(bob, alice, room)

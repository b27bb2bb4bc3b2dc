"""Room membership over HTTP: every refusal beside its permitted twin."""

from __future__ import annotations

import secrets

from tests.support.client import q
from tests.support.live import LiveServer


def _membership(client, room_id: str, user_id: str) -> str:
    path = f"/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}"
    return str(client.get(path, spec="/rooms/{roomId}/state/{eventType}/{stateKey}").json["membership"])


def test_join_invite_only_room_is_refused_but_an_invited_user_joins(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="private_chat")
    r = bob.post(f"/rooms/{q(room)}/join", expect=403, spec="/rooms/{roomId}/join")
    assert r.json["errcode"] == "M_FORBIDDEN"
    alice.post(
        f"/rooms/{q(room)}/invite",
        {"user_id": bob.user_id, "reason": "welcome"},
        spec="/rooms/{roomId}/invite",
    )
    r = bob.post(f"/rooms/{q(room)}/join", spec="/rooms/{roomId}/join")
    assert r.json["room_id"] == room
    assert room in bob.get("/joined_rooms", spec="/joined_rooms").json["joined_rooms"]


def test_join_by_alias_with_via_and_unknown_rooms(make_client) -> None:
    alice, bob = make_client(), make_client()
    name = f"hall{secrets.token_hex(3)}"
    room = alice.create_room(preset="public_chat", room_alias_name=name)
    r = bob.post(
        f"/join/{q(f'#{name}:localhost')}", params={"via": "localhost"}, spec="/join/{roomIdOrAlias}"
    )
    assert r.json["room_id"] == room
    # The spec lists no 404 here; like Synapse we answer M_NOT_FOUND for what cannot be resolved.
    missing = bob.post(f"/join/{q('#nothing:localhost')}", expect=404)
    assert missing.json["errcode"] == "M_NOT_FOUND"
    # A room on a server that cannot be reached: the error names the server.
    remote = bob.post(
        f"/join/{q('!abc:remote.example')}", params={"server_name": "remote.example"}, expect=502
    )
    assert remote.json["errcode"] == "M_UNKNOWN" and "remote.example" in remote.json["error"]
    bad = bob.post(f"/join/{q('nonsense')}", expect=400)
    assert bad.json["errcode"] == "M_INVALID_PARAM"


def test_rejoin_after_ban_is_refused_and_allowed_after_unban(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    alice.post(
        f"/rooms/{q(room)}/ban", {"user_id": bob.user_id, "reason": "spam"}, spec="/rooms/{roomId}/ban"
    )
    r = bob.post(f"/rooms/{q(room)}/join", expect=403, spec="/rooms/{roomId}/join")
    assert r.json["errcode"] == "M_FORBIDDEN"
    not_banned = alice.post(
        f"/rooms/{q(room)}/unban", {"user_id": alice.user_id}, expect=403, spec="/rooms/{roomId}/unban"
    )
    assert not_banned.json["errcode"] == "M_FORBIDDEN"
    alice.post(f"/rooms/{q(room)}/unban", {"user_id": bob.user_id}, spec="/rooms/{roomId}/unban")
    assert _membership(alice, room, bob.user_id) == "leave"
    bob.post(f"/rooms/{q(room)}/join", spec="/rooms/{roomId}/join")
    assert _membership(alice, room, bob.user_id) == "join"


def test_kick_and_ban_of_an_equal_level_are_refused_and_of_a_lower_level_allowed(make_client) -> None:
    alice, bob, carol, dave = (make_client() for _ in range(4))
    room = alice.create_room(preset="public_chat", room_version="11")
    for c in (bob, carol, dave):
        c.join(room)
    pl = {"users": {alice.user_id: 100, bob.user_id: 50, carol.user_id: 50}, "kick": 50, "ban": 50}
    alice.put(
        f"/rooms/{q(room)}/state/m.room.power_levels/",
        pl,
        spec="/rooms/{roomId}/state/{eventType}/{stateKey}",
    )
    r = bob.post(
        f"/rooms/{q(room)}/kick", {"user_id": carol.user_id}, expect=403, spec="/rooms/{roomId}/kick"
    )
    assert r.json["errcode"] == "M_FORBIDDEN"
    bob.post(f"/rooms/{q(room)}/ban", {"user_id": carol.user_id}, expect=403, spec="/rooms/{roomId}/ban")
    bob.post(
        f"/rooms/{q(room)}/kick", {"user_id": dave.user_id, "reason": "bye"}, spec="/rooms/{roomId}/kick"
    )
    assert _membership(alice, room, dave.user_id) == "leave"
    dave.post(f"/rooms/{q(room)}/join", spec="/rooms/{roomId}/join")  # a kick is not a ban
    bob.post(f"/rooms/{q(room)}/ban", {"user_id": dave.user_id}, spec="/rooms/{roomId}/ban")
    assert _membership(alice, room, dave.user_id) == "ban"
    # The refused kick and ban left carol where she was.
    assert _membership(alice, room, carol.user_id) == "join"


def test_power_levels_above_ones_own_are_refused(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat", room_version="11")
    bob.join(room)
    path = f"/rooms/{q(room)}/state/m.room.power_levels/"
    alice.put(
        path,
        {"users": {alice.user_id: 100, bob.user_id: 50}},
        spec="/rooms/{roomId}/state/{eventType}/{stateKey}",
    )
    r = bob.put(
        path,
        {"users": {alice.user_id: 100, bob.user_id: 99}},
        expect=403,
        spec="/rooms/{roomId}/state/{eventType}/{stateKey}",
    )
    assert r.json["errcode"] == "M_FORBIDDEN"
    alice.put(
        path,
        {"users": {alice.user_id: 100, bob.user_id: 99}},
        spec="/rooms/{roomId}/state/{eventType}/{stateKey}",
    )


def test_invites_without_the_invite_level_are_refused(make_client) -> None:
    alice, bob, carol = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")  # invite level 50
    bob.join(room)
    r = bob.post(
        f"/rooms/{q(room)}/invite", {"user_id": carol.user_id}, expect=403, spec="/rooms/{roomId}/invite"
    )
    assert r.json["errcode"] == "M_FORBIDDEN"
    alice.post(f"/rooms/{q(room)}/invite", {"user_id": carol.user_id}, spec="/rooms/{roomId}/invite")
    missing = alice.post(f"/rooms/{q(room)}/invite", {}, expect=400)
    assert missing.json["errcode"] == "M_MISSING_PARAM"


def test_leave_rejects_an_invite_and_forget_needs_leaving_first(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room()
    alice.post(f"/rooms/{q(room)}/invite", {"user_id": bob.user_id})
    r = bob.post(f"/rooms/{q(room)}/forget", expect=400, spec="/rooms/{roomId}/forget")
    assert r.json["errcode"] == "M_UNKNOWN"
    bob.post(f"/rooms/{q(room)}/leave", {"reason": "no thanks"}, spec="/rooms/{roomId}/leave")
    bob.post(f"/rooms/{q(room)}/leave", spec="/rooms/{roomId}/leave")  # leaving twice is fine
    bob.post(f"/rooms/{q(room)}/forget", spec="/rooms/{roomId}/forget")
    assert room not in bob.get("/joined_rooms", spec="/joined_rooms").json["joined_rooms"]
    # An unknown local room answers as a room you are not in (no probing for room IDs).
    unknown = bob.post(f"/rooms/{q('!nope:localhost')}/leave", expect=403)
    assert unknown.json["errcode"] == "M_FORBIDDEN"


def test_knock_on_a_knock_room_and_refused_elsewhere(make_client) -> None:
    alice, bob = make_client(), make_client()
    knockable = alice.create_room(
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]
    )
    closed = alice.create_room()
    r = bob.post(f"/knock/{q(closed)}", {"reason": "hi"}, expect=403, spec="/knock/{roomIdOrAlias}")
    assert r.json["errcode"] == "M_FORBIDDEN"
    r = bob.post(f"/knock/{q(knockable)}", {"reason": "hi"}, spec="/knock/{roomIdOrAlias}")
    assert r.json["room_id"] == knockable
    members = alice.get(
        f"/rooms/{q(knockable)}/members", params={"membership": "knock"}, spec="/rooms/{roomId}/members"
    ).json["chunk"]
    assert [m["state_key"] for m in members] == [bob.user_id]
    alice.post(f"/rooms/{q(knockable)}/invite", {"user_id": bob.user_id})
    bob.join(knockable)


def test_members_filters_at_token_and_joined_members(make_client) -> None:
    alice, bob, carol = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    carol.post(f"/rooms/{q(room)}/leave")
    path = f"/rooms/{q(room)}/members"
    everyone = alice.get(path, spec="/rooms/{roomId}/members").json["chunk"]
    assert {m["state_key"] for m in everyone} == {alice.user_id, bob.user_id, carol.user_id}
    joined = alice.get(path, params={"membership": "join"}, spec="/rooms/{roomId}/members").json["chunk"]
    assert {m["state_key"] for m in joined} == {alice.user_id, bob.user_id}
    not_joined = alice.get(path, params={"not_membership": "join"}, spec="/rooms/{roomId}/members").json[
        "chunk"
    ]
    assert {m["state_key"] for m in not_joined} == {carol.user_id}
    alice.get(path, params={"membership": "nonsense"}, expect=400)
    jm = alice.get(f"/rooms/{q(room)}/joined_members", spec="/rooms/{roomId}/joined_members").json["joined"]
    assert set(jm) == {alice.user_id, bob.user_id}
    assert jm[bob.user_id]["display_name"]
    carol.get(f"/rooms/{q(room)}/joined_members", expect=403, spec="/rooms/{roomId}/joined_members")
    # At an old sync token (before bob joined) only alice was there.
    early = make_client()
    early_room = early.create_room(preset="public_chat")
    token = f"s{_events_position(early, early_room)}"
    bob.join(early_room)
    at_start = early.get(
        f"/rooms/{q(early_room)}/members", params={"at": token}, spec="/rooms/{roomId}/members"
    ).json
    assert {m["state_key"] for m in at_start["chunk"]} == {early.user_id}


def _events_position(client, room_id: str) -> int:
    """The stream position of the room's last event (what a /sync next_batch would carry)."""
    last = client.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 1}).json["start"]
    return int(last.split("_")[1])


def test_non_members_cannot_list_members_of_a_private_room(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = alice.create_room()
    r = mallory.get(f"/rooms/{q(room)}/members", expect=403, spec="/rooms/{roomId}/members")
    assert r.json["errcode"] == "M_FORBIDDEN"


def test_joins_are_rate_limited(tmp_path) -> None:
    from tests.support.client import MatrixClient

    server = LiveServer(tmp_path, config={"rc_joins": {"per_second": 0.001, "burst_count": 2}}).start()
    try:
        alice = MatrixClient(server.base_url).register()
        bob = MatrixClient(server.base_url).register()
        rooms = [alice.create_room(preset="public_chat") for _ in range(3)]
        bob.post(f"/rooms/{q(rooms[0])}/join")
        bob.post(f"/rooms/{q(rooms[1])}/join")
        r = bob.post(f"/rooms/{q(rooms[2])}/join", expect=429, spec="/rooms/{roomId}/join")
        assert r.json["errcode"] == "M_LIMIT_EXCEEDED" and r.json["retry_after_ms"] > 0
    finally:
        server.destroy()

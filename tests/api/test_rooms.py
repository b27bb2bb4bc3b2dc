"""Creating, upgrading and reporting rooms over HTTP, against a live server."""

from __future__ import annotations

import secrets

from tests.support.client import q


def _state(c, room_id: str, etype: str, skey: str = "", expect: int = 200):
    path = f"/rooms/{q(room_id)}/state/{q(etype)}/{q(skey)}"
    return c.get(path, expect=expect, spec="/rooms/{roomId}/state/{eventType}/{stateKey}").json


def test_create_room_applies_preset_name_topic_alias_and_invites(make_client) -> None:
    alice, bob = make_client(), make_client()
    alias_name = f"pub{secrets.token_hex(3)}"
    r = alice.post(
        "/createRoom",
        {
            "preset": "public_chat",
            "name": "The Pub",
            "topic": "Happy hour",
            "room_alias_name": alias_name,
            "invite": [bob.user_id],
            "initial_state": [{"type": "m.room.guest_access", "content": {"guest_access": "can_join"}}],
        },
        spec="/createRoom",
    )
    room = r.json["room_id"]
    assert _state(alice, room, "m.room.name") == {"name": "The Pub"}
    assert _state(alice, room, "m.room.topic")["topic"] == "Happy hour"
    assert _state(alice, room, "m.room.join_rules") == {"join_rule": "public"}
    assert _state(alice, room, "m.room.guest_access") == {
        "guest_access": "can_join"
    }  # initial_state beats preset
    assert _state(alice, room, "m.room.canonical_alias")["alias"] == f"#{alias_name}:localhost"
    assert _state(alice, room, "m.room.member", bob.user_id)["membership"] == "invite"
    create = _state(alice, room, "m.room.create")
    assert create["room_version"] == "12"
    # v12: the creator is not listed in power levels and tombstones need more than state_default.
    pl = _state(alice, room, "m.room.power_levels")
    assert alice.user_id not in pl["users"] and pl["events"]["m.room.tombstone"] > pl["state_default"]
    # No spec= here: the spec's oneOf(object, state event) matches a full event twice, so it can never validate.
    event = alice.get(f"/rooms/{q(room)}/state/m.room.name/", params={"format": "event"}).json
    assert event["type"] == "m.room.name" and event["content"] == {"name": "The Pub"}


def test_a_taken_alias_is_m_room_in_use_and_nothing_is_created(make_client) -> None:
    alice = make_client()
    name = f"taken{secrets.token_hex(3)}"
    alice.create_room(room_alias_name=name)
    before = alice.get("/joined_rooms", spec="/joined_rooms").json["joined_rooms"]
    r = alice.post("/createRoom", {"room_alias_name": name}, expect=400, spec="/createRoom")
    assert r.json["errcode"] == "M_ROOM_IN_USE"
    assert alice.get("/joined_rooms").json["joined_rooms"] == before


def test_room_versions_unknown_and_v1_are_refused_while_v10_works(make_client) -> None:
    alice = make_client()
    for version in ("1", "999", 12):
        r = alice.post("/createRoom", {"room_version": version}, expect=400, spec="/createRoom")
        assert r.json["errcode"] in ("M_UNSUPPORTED_ROOM_VERSION", "M_INVALID_PARAM")
    room = alice.post("/createRoom", {"room_version": "10"}, spec="/createRoom").json["room_id"]
    assert _state(alice, room, "m.room.create")["room_version"] == "10"


def test_bad_create_room_bodies_are_400(make_client) -> None:
    alice = make_client()
    bodies: list[dict[str, object]] = [
        {"visibility": "secret"},
        {"preset": "party"},
        {"invite": ["not-a-user"]},
        {"initial_state": [{"type": "m.room.topic"}]},
        {"creation_content": "nope"},
        {"name": 42},
        {"power_level_content_override": []},
    ]
    for body in bodies:
        r = alice.post("/createRoom", body, expect=400, spec="/createRoom")
        assert r.json["errcode"].startswith("M_"), body
    alice.post("/createRoom", {}, spec="/createRoom")


def test_v12_creation_content_additional_creators_and_trusted_private_chat(make_client) -> None:
    alice, bob, carol = make_client(), make_client(), make_client()
    room = alice.create_room(
        preset="trusted_private_chat",
        invite=[bob.user_id],
        creation_content={"additional_creators": [carol.user_id]},
    )
    create = _state(alice, room, "m.room.create")
    assert sorted(create["additional_creators"]) == sorted([bob.user_id, carol.user_id])
    bad = alice.post(
        "/createRoom", {"creation_content": {"additional_creators": ["nope"]}}, expect=400, spec="/createRoom"
    )
    assert bad.json["errcode"] == "M_INVALID_PARAM"


def test_power_level_override_and_is_direct(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(
        room_version="11",
        invite=[bob.user_id],
        is_direct=True,
        power_level_content_override={"events_default": 20},
    )
    assert _state(alice, room, "m.room.power_levels")["events_default"] == 20
    assert _state(alice, room, "m.room.member", bob.user_id)["is_direct"] is True


def test_publication_with_visibility_public(make_client) -> None:
    alice = make_client()
    room = alice.create_room(visibility="public", name="Listed")
    r = alice.get(f"/directory/list/room/{q(room)}", spec="/directory/list/room/{roomId}")
    assert r.json == {"visibility": "public"}
    private = alice.create_room()
    assert alice.get(f"/directory/list/room/{q(private)}").json == {"visibility": "private"}


def test_room_upgrade_end_to_end(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat", room_version="11", name="Old")
    bob.join(room)
    refused = bob.post(
        f"/rooms/{q(room)}/upgrade", {"new_version": "12"}, expect=403, spec="/rooms/{roomId}/upgrade"
    )
    assert refused.json["errcode"] == "M_FORBIDDEN"
    bad = alice.post(
        f"/rooms/{q(room)}/upgrade", {"new_version": "99"}, expect=400, spec="/rooms/{roomId}/upgrade"
    )
    assert bad.json["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"
    r = alice.post(f"/rooms/{q(room)}/upgrade", {"new_version": "12"}, spec="/rooms/{roomId}/upgrade")
    new_room = r.json["replacement_room"]
    assert _state(alice, room, "m.room.tombstone")["replacement_room"] == new_room
    assert _state(alice, new_room, "m.room.create")["predecessor"]["room_id"] == room
    assert _state(alice, new_room, "m.room.name") == {"name": "Old"}
    bob.join(new_room)  # public join rule carried over
    bob.send(new_room, "hello in the new room")


def _reports_by(
    server, reporter: str
) -> list[tuple[str | None, str | None, str | None, str | None, int | None]]:
    """What the server kept of ``reporter``'s reports, for its admins (oldest first)."""
    return [
        tuple(row)
        for row in server.query(
            "SELECT room_id, event_id, reported_user_id, reason, score FROM content_reports"
            " WHERE reporter = %s ORDER BY id",
            (reporter,),
        )
    ]


def test_reporting_events_needs_membership_and_a_visible_event(dagma_server, make_client) -> None:
    alice, bob, mallory = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    event_id = alice.send(room, "offensive")
    path = f"/rooms/{q(room)}/report/{q(event_id)}"
    bob.post(path, {"reason": "rude", "score": -100}, spec="/rooms/{roomId}/report/{eventId}")
    r = mallory.post(path, {"reason": "x"}, expect=404, spec="/rooms/{roomId}/report/{eventId}")
    assert r.json["errcode"] == "M_NOT_FOUND"
    bob.post(
        f"/rooms/{q(room)}/report/{q('$unknown')}",
        {"reason": "x"},
        expect=404,
        spec="/rooms/{roomId}/report/{eventId}",
    )
    # Bob's report is kept for the admins; the refused ones left nothing.
    assert _reports_by(dagma_server, bob.user_id) == [(room, event_id, None, "rude", -100)]
    assert _reports_by(dagma_server, mallory.user_id) == []


def test_reporting_rooms_and_users(dagma_server, make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room()
    bob.post(f"/rooms/{q(room)}/report", {"reason": "spam room"}, spec="/rooms/{roomId}/report")
    bob.post(
        f"/rooms/{q('!nope:localhost')}/report", {"reason": "x"}, expect=404, spec="/rooms/{roomId}/report"
    )
    bob.post(f"/users/{q(alice.user_id)}/report", {"reason": "spammer"}, spec="/users/{userId}/report")
    bob.post(
        f"/users/{q('@ghost:localhost')}/report", {"reason": "x"}, expect=404, spec="/users/{userId}/report"
    )
    # Both reports are kept for the admins; the refused ones left nothing.
    assert _reports_by(dagma_server, bob.user_id) == [
        (room, None, None, "spam room", None),
        (None, None, alice.user_id, "spammer", None),
    ]


def test_matrix_nio_room_journey(make_client, dagma_server) -> None:
    """A real client library (matrix-nio) creates, joins, talks, pages, redacts and reads state."""
    import asyncio

    import nio

    bob = make_client()

    async def journey() -> None:
        alice = nio.AsyncClient(dagma_server.base_url, f"nio{secrets.token_hex(3)}")
        reg = await alice.register(alice.user, "correct horse battery")
        assert isinstance(reg, nio.RegisterResponse), reg
        try:
            alias = f"nio{secrets.token_hex(3)}"
            created = await alice.room_create(
                alias=alias,
                name="nio room",
                topic="t",
                preset=nio.RoomPreset.public_chat,
                invite=[bob.user_id],
            )
            assert isinstance(created, nio.RoomCreateResponse), created
            room = created.room_id
            resolved = await alice.room_resolve_alias(f"#{alias}:localhost")
            assert isinstance(resolved, nio.RoomResolveAliasResponse) and resolved.room_id == room
            sent = [
                await alice.room_send(room, "m.room.message", {"msgtype": "m.text", "body": f"n{i}"})
                for i in range(3)
            ]
            assert all(isinstance(s, nio.RoomSendResponse) for s in sent), sent
            msgs = await alice.room_messages(room, start="", limit=2)
            assert isinstance(msgs, nio.RoomMessagesResponse), msgs
            assert [e.body for e in msgs.chunk] == ["n2", "n1"]
            more = await alice.room_messages(room, start=msgs.end, limit=1)
            assert isinstance(more, nio.RoomMessagesResponse) and [e.body for e in more.chunk] == ["n0"]
            context = await alice.room_context(room, sent[1].event_id, limit=2)
            assert isinstance(context, nio.RoomContextResponse), context
            redacted = await alice.room_redact(room, sent[0].event_id, reason="oops")
            assert isinstance(redacted, nio.RoomRedactResponse), redacted
            state = await alice.room_get_state(room)
            assert isinstance(state, nio.RoomGetStateResponse), state
            name = await alice.room_get_state_event(room, "m.room.name")
            assert isinstance(name, nio.RoomGetStateEventResponse) and name.content == {"name": "nio room"}
            event = await alice.room_get_event(room, sent[2].event_id)
            assert isinstance(event, nio.RoomGetEventResponse), event
            members = await alice.joined_members(room)
            assert isinstance(members, nio.JoinedMembersResponse) and len(members.members) == 1
            joined = await alice.joined_rooms()
            assert isinstance(joined, nio.JoinedRoomsResponse) and room in joined.rooms
            left = await alice.room_leave(room)
            assert isinstance(left, nio.RoomLeaveResponse), left
            forgot = await alice.room_forget(room)
            assert isinstance(forgot, nio.RoomForgetResponse), forgot
        finally:
            await alice.close()

    asyncio.run(journey())

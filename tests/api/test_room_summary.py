"""Room summaries (spec v1.15 "Room summaries", ``GET /_matrix/client/v1/room_summary/{roomIdOrAlias}``),
as Element's room previews and knock screens use them, against a live server process."""

from __future__ import annotations

from typing import Any

from tests.support.client import MatrixClient, q

SPEC = "/room_summary/{roomIdOrAlias}"


def summary(client: MatrixClient, room: str, *, expect: int = 200, auth: bool = True, **params: Any) -> Any:
    return client.get(
        f"/_matrix/client/v1/room_summary/{q(room)}",
        params=params or None,
        expect=expect,
        spec=SPEC,
        auth=auth,
    ).json


def test_a_public_room_is_summarised_for_anyone_and_its_alias_resolves(dagma_server, make_client) -> None:
    alice, bob = make_client(), make_client()
    alias_local = f"summary{alice.user_id.split(':')[0][1:]}"
    room = alice.create_room(
        preset="public_chat", name="Cheese", topic="Tasty", room_alias_name=alias_local,
        creation_content={"type": "m.space"},
        initial_state=[{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
    )  # fmt: skip
    bob.join(room)
    alias = f"#{alias_local}:{alice.user_id.split(':', 1)[1]}"
    anonymous = MatrixClient(dagma_server.base_url)
    told = summary(anonymous, room, auth=False)
    assert told == {
        "room_id": room, "name": "Cheese", "topic": "Tasty", "canonical_alias": alias, "num_joined_members": 2,
        "world_readable": False, "guest_can_join": False, "join_rule": "public", "room_type": "m.space",
        "encryption": "m.megolm.v1.aes-sha2", "room_version": told["room_version"],
    }  # fmt: skip
    assert isinstance(told["room_version"], str) and told["room_version"]
    # Signed in: the user's membership too ("leave" for none, as Synapse); by alias alike.
    assert summary(bob, room)["membership"] == "join"
    stranger = make_client()
    assert summary(stranger, alias)["membership"] == "leave" and summary(stranger, alias)["room_id"] == room


def test_a_private_room_is_told_only_to_its_members_and_invitees(dagma_server, make_client) -> None:
    alice, bob, eve = make_client(), make_client(), make_client()
    room = alice.create_room(preset="private_chat", name="Secret")
    # Not accessible looks like not existing: 404, the same as for an unknown room.
    for client, auth in ((MatrixClient(dagma_server.base_url), False), (eve, True)):
        assert summary(client, room, expect=404, auth=auth)["errcode"] == "M_NOT_FOUND"
    unknown = f"!nosuchroom:{alice.user_id.split(':', 1)[1]}"
    assert summary(eve, unknown, expect=404)["errcode"] == "M_NOT_FOUND"
    alice.post(f"/rooms/{q(room)}/invite", {"user_id": bob.user_id})
    told = summary(bob, room)
    assert told["membership"] == "invite" and told["name"] == "Secret" and told["join_rule"] == "invite"
    assert summary(alice, room)["membership"] == "join"


def test_a_restricted_room_names_its_allowed_rooms_to_their_members(make_client) -> None:
    alice, bob, eve = make_client(), make_client(), make_client()
    space = alice.create_room(preset="private_chat", creation_content={"type": "m.space"})
    room = alice.create_room(
        preset="private_chat", room_version="10",
        initial_state=[{"type": "m.room.join_rules", "state_key": "",
                        "content": {"join_rule": "restricted",
                                    "allow": [{"type": "m.room_membership", "room_id": space}]}}],
    )  # fmt: skip
    alice.post(f"/rooms/{q(space)}/invite", {"user_id": bob.user_id})
    bob.join(space)
    told = summary(bob, room)
    assert told["join_rule"] == "restricted" and told["allowed_room_ids"] == [space]
    assert told["membership"] == "leave" and told["room_version"] == "10"
    assert summary(eve, room, expect=404)["errcode"] == "M_NOT_FOUND"


def test_bad_input_is_refused_and_other_servers_are_not_asked_without_a_token(
    dagma_server, make_client
) -> None:
    alice = make_client()
    # A malformed ID or alias is the client's error (400; the spec lists only 200 and 404).
    for bad in ("not-a-room", "#bad alias"):
        r = alice.get(f"/_matrix/client/v1/room_summary/{q(bad)}", expect=400)
        assert r.json["errcode"] == "M_INVALID_PARAM"
    anonymous = MatrixClient(dagma_server.base_url)
    for remote in ("#room:elsewhere.example", "!room:elsewhere.example"):
        assert (
            summary(anonymous, remote, expect=404, auth=False, via="elsewhere.example")["errcode"]
            == "M_NOT_FOUND"
        )

"""The space hierarchy (``GET /_matrix/client/v1/rooms/{roomId}/hierarchy``), as Element's space home uses it."""

from __future__ import annotations

from typing import Any

from tests.support.client import MatrixClient, q

SPEC = "/rooms/{roomId}/hierarchy"


def hierarchy(client: MatrixClient, room: str, *, expect: int = 200, **params: Any) -> dict[str, Any]:
    r = client.get(
        f"/_matrix/client/v1/rooms/{q(room)}/hierarchy", params=params or None, expect=expect, spec=SPEC
    )
    return r.json


def add_child(client: MatrixClient, space: str, child: str, **content: Any) -> None:
    client.put(f"/rooms/{q(space)}/state/m.space.child/{q(child)}", {"via": ["localhost"], **content})


def make_space(client: MatrixClient, name: str, **body: Any) -> str:
    return client.create_room(name=name, creation_content={"type": "m.space"}, **body)


def test_a_space_lists_its_rooms_breadth_first_in_order(make_client) -> None:
    alice = make_client()
    space = make_space(alice, "Company", preset="public_chat")
    general = alice.create_room(name="General", preset="public_chat")
    random_ = alice.create_room(name="Random", preset="public_chat")
    team = make_space(alice, "Team", preset="public_chat")
    standup = alice.create_room(name="Standup", preset="public_chat")
    add_child(alice, space, random_, order="b")
    add_child(alice, space, general, order="a")
    add_child(alice, space, team)  # no order: after the ordered ones
    add_child(alice, team, standup, suggested=True)
    add_child(alice, team, space)  # a cycle back to the root is not followed again
    rooms = hierarchy(alice, space)["rooms"]
    assert [r["room_id"] for r in rooms] == [space, general, random_, team, standup]
    root = rooms[0]
    assert root["room_type"] == "m.space" and root["name"] == "Company" and root["num_joined_members"] == 1
    assert [c["state_key"] for c in root["children_state"]] == [general, random_, team]
    assert all(
        c["type"] == "m.space.child" and c["content"]["via"] == ["localhost"] for c in root["children_state"]
    )
    assert rooms[1]["join_rule"] == "public" and "room_type" not in rooms[1]
    # max_depth 0: the root alone (its links are still listed); suggested_only filters links.
    only_root = hierarchy(alice, space, max_depth="0")["rooms"]
    assert [r["room_id"] for r in only_root] == [space]
    assert [r["room_id"] for r in hierarchy(alice, team, suggested_only="true")["rooms"]] == [team, standup]


def test_links_without_via_and_removed_children_do_not_count(make_client) -> None:
    alice = make_client()
    space = make_space(alice, "S")
    kept, dropped = alice.create_room(), alice.create_room()
    add_child(alice, space, kept)
    add_child(alice, space, dropped)
    alice.put(f"/rooms/{q(space)}/state/m.space.child/{q(dropped)}", {})  # unlinked: empty content
    rooms = hierarchy(alice, space)["rooms"]
    assert [r["room_id"] for r in rooms] == [space, kept]


def test_rooms_the_user_may_not_see_are_left_out(make_client) -> None:
    alice, bob = make_client(), make_client()
    space = make_space(alice, "Mixed", preset="public_chat")
    public = alice.create_room(preset="public_chat")
    private = alice.create_room(preset="private_chat")
    restricted = alice.create_room(
        preset="private_chat",
        initial_state=[{"type": "m.room.join_rules", "state_key": "",
                        "content": {"join_rule": "restricted",
                                    "allow": [{"type": "m.room_membership", "room_id": space}]}}],
    )  # fmt: skip
    for child in (public, private, restricted):
        add_child(alice, space, child)
    assert len(hierarchy(alice, space)["rooms"]) == 4  # control: the creator sees all
    seen = [r["room_id"] for r in hierarchy(bob, space)["rooms"]]
    assert seen == [space, public]  # the restricted room needs membership of the space
    bob.join(space)
    assert [r["room_id"] for r in hierarchy(bob, space)["rooms"]] == [space, public, restricted]
    # A private space itself: 403, and an unknown room answers the same.
    hidden = make_space(alice, "Hidden", preset="private_chat")
    assert hierarchy(bob, hidden, expect=403)["errcode"] == "M_FORBIDDEN"
    assert hierarchy(bob, "!unknown:localhost", expect=403)["errcode"] == "M_FORBIDDEN"


def test_pagination(make_client) -> None:
    alice = make_client()
    space = make_space(alice, "Big")
    children = [alice.create_room() for _ in range(5)]
    for i, child in enumerate(children):
        add_child(alice, space, child, order=f"{i:02d}")
    first = hierarchy(alice, space, limit="4")
    assert [r["room_id"] for r in first["rooms"]] == [space, *children[:3]]
    second = hierarchy(alice, space, limit="4", **{"from": first["next_batch"]})
    assert [r["room_id"] for r in second["rooms"]] == children[3:] and "next_batch" not in second
    # A token used with other parameters, and garbage, are refused.
    r = alice.get(f"/_matrix/client/v1/rooms/{q(space)}/hierarchy",
                  params={"from": first["next_batch"], "max_depth": "1"}, expect=400)  # fmt: skip
    assert r.json["errcode"] == "M_INVALID_PARAM"
    for params in ({"from": "zzz"}, {"limit": "-1"}, {"max_depth": "x"}, {"suggested_only": "maybe"}):
        r = alice.get(f"/_matrix/client/v1/rooms/{q(space)}/hierarchy", params=params, expect=400)
        assert r.json["errcode"] == "M_INVALID_PARAM"

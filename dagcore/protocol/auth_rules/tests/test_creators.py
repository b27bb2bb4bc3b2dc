"""Room creators and power: v1-v10 creator key, v11 implicit creator, v12 privileged creators."""

from __future__ import annotations

import math

import pytest

from dagcore.protocol.auth_rules import INFINITE_POWER, get_user_power_level, is_creator

from .builder import ALICE, BOB, CAROL, DAVE, Room, standard_room
from .conftest import rejection


def levels_event(room: Room, sender: str, content: dict):
    return room.make("m.room.power_levels", sender, content, state_key="")


@pytest.mark.parametrize("version", ["1", "10"])
def test_before_v11_the_creator_without_power_levels_has_100(version):
    room = Room(version, creator=ALICE, create_content={"creator": DAVE})
    assert get_user_power_level(DAVE, room.state) == 100
    assert get_user_power_level(ALICE, room.state) == 0
    assert is_creator(DAVE, room.state)


def test_v11_the_create_sender_is_the_creator():
    room = Room("11", create_content={"creator": DAVE})
    assert get_user_power_level(ALICE, room.state) == 100
    assert get_user_power_level(DAVE, room.state) == 0
    assert is_creator(ALICE, room.state) and not is_creator(DAVE, room.state)


@pytest.mark.parametrize("version", ["10", "11"])
def test_before_v12_the_power_levels_event_decides_the_creators_level(version):
    room = Room(version)
    room.join(ALICE)
    room.power_levels({"users": {ALICE: 20}})
    assert get_user_power_level(ALICE, room.state) == 20


def test_v12_creators_have_infinite_power_with_or_without_power_levels():
    room = Room("12", create_content={"additional_creators": [BOB]})
    assert get_user_power_level(ALICE, room.state) == math.inf == INFINITE_POWER
    assert get_user_power_level(BOB, room.state) == math.inf
    assert get_user_power_level(CAROL, room.state) == 0
    room = standard_room("12", create_content={"additional_creators": [BOB]}, users_default=5)
    assert get_user_power_level(BOB, room.state) == math.inf
    assert get_user_power_level(CAROL, room.state) == 5


def test_v12_a_power_levels_event_listing_the_create_sender_is_rejected():
    room = standard_room("12")
    assert "creators" in rejection(levels_event(room, ALICE, {"users": {ALICE: 100}}), room.state)
    assert rejection(levels_event(room, ALICE, {"users": {CAROL: 100}}), room.state) is None


def test_v12_a_power_levels_event_listing_an_additional_creator_is_rejected():
    room = standard_room("12", create_content={"additional_creators": [BOB]})
    assert "creators" in rejection(levels_event(room, ALICE, {"users": {BOB: 0}}), room.state)


def test_v12_the_first_power_levels_event_may_not_list_creators_either():
    room = Room("12")
    room.join(ALICE)
    assert "creators" in rejection(levels_event(room, ALICE, {"users": {ALICE: 100}}), room.state)
    assert rejection(levels_event(room, ALICE, {"users": {}}), room.state) is None


def test_v11_the_creator_may_be_listed_in_power_levels():
    room = standard_room("11")
    assert rejection(levels_event(room, ALICE, {"users": {ALICE: 100}}), room.state) is None


def test_v12_an_additional_creator_can_join_and_act_with_infinite_power():
    room = standard_room("12", create_content={"additional_creators": [BOB]}, join_rule="invite")
    room.member(ALICE, BOB, "invite")
    room.join(BOB)
    room.member(ALICE, CAROL, "invite")
    room.join(CAROL)
    # Even a level above every integer is below a creator.
    room.power_levels({"users": {CAROL: 2**53 - 1}})
    assert (
        rejection(room.make("m.room.member", BOB, {"membership": "ban"}, state_key=CAROL), room.state) is None
    )


def test_v12_nobody_can_kick_or_ban_a_creator_not_even_another_creator():
    room = standard_room("12", create_content={"additional_creators": [BOB]}, join_rule="public")
    room.join(BOB)
    room.join(CAROL)
    room.power_levels({"users": {CAROL: 2**53 - 1}})
    for sender in (BOB, CAROL):
        for membership in ("leave", "ban"):
            event = room.make("m.room.member", sender, {"membership": membership}, state_key=ALICE)
            assert "too low" in rejection(event, room.state)


def test_v11_the_creator_can_be_kicked_by_a_higher_user():
    room = standard_room("11", users={CAROL: 100}, join_rule="public")
    room.join(CAROL)
    room.power_levels({"users": {ALICE: 10, CAROL: 100}}, sender=ALICE)
    event = room.make("m.room.member", CAROL, {"membership": "leave"}, state_key=ALICE)
    assert rejection(event, room.state) is None


def test_v12_a_creator_can_change_any_level():
    room = standard_room("12", users={CAROL: 100}, join_rule="public")
    room.join(CAROL)
    event = levels_event(room, ALICE, {"users": {CAROL: 0}, "ban": 10**9})
    assert rejection(event, room.state) is None


def test_v12_tombstone_level_is_not_an_auth_rule():
    room = standard_room("12", users={CAROL: 100}, join_rule="public")
    room.join(CAROL)
    tombstone = room.make(
        "m.room.tombstone", CAROL, {"body": "moved", "replacement_room": "!new"}, state_key=""
    )
    assert rejection(tombstone, room.state) is None


def test_v12_an_event_whose_room_id_is_not_the_state_create_event_is_rejected():
    room = standard_room("12")
    other = standard_room("12")
    event = room.make("m.room.message", ALICE, {"body": "x"})
    state = dict(room.state)
    state[("m.room.create", "")] = other.create
    assert "room_id" in rejection(event, state)
    assert rejection(event, room.state) is None

"""m.room.power_levels: value formats per version and who may change what."""

from __future__ import annotations

import pytest

from .builder import ALICE, ALL_VERSIONS, BOB, CAROL, DAVE, Room, standard_room
from .conftest import rejection

V1_9 = [str(n) for n in range(1, 10)]
V10_UP = ["10", "11", "12"]


def room_with_members(version: str, **power) -> Room:
    room = standard_room(version, users={CAROL: 50}, **power)
    for user in (BOB, CAROL, DAVE):
        room.join(user)
    return room


def levels_event(room: Room, sender: str, content: dict):
    return room.make("m.room.power_levels", sender, content, state_key="")


def current_users(room: Room) -> dict:
    return dict(room.state[("m.room.power_levels", "")].content.get("users", {}))


# -- formats -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", V1_9)
def test_before_v10_string_power_levels_are_accepted(version):
    room = room_with_members(version)
    content = {"users": {**current_users(room), BOB: "10"}, "ban": "50", "events": {"m.room.name": " +50 "}}
    assert rejection(levels_event(room, ALICE, content), room.state) is None


@pytest.mark.parametrize("version", V10_UP)
def test_from_v10_string_power_levels_are_rejected(version):
    room = room_with_members(version)
    assert "integer" in rejection(
        levels_event(room, ALICE, {"users": current_users(room), "ban": "50"}), room.state
    )
    assert "integer" in rejection(
        levels_event(room, ALICE, {"users": {**current_users(room), BOB: "10"}}), room.state
    )
    assert "events" in rejection(
        levels_event(room, ALICE, {"users": current_users(room), "events": {"m.room.name": "50"}}), room.state
    )
    assert "notifications" in rejection(
        levels_event(room, ALICE, {"users": current_users(room), "notifications": {"room": "50"}}), room.state
    )
    assert rejection(levels_event(room, ALICE, {"users": current_users(room), "ban": 50}), room.state) is None


@pytest.mark.parametrize("version", V10_UP)
def test_from_v10_events_must_be_an_object(version):
    room = room_with_members(version)
    assert "events" in rejection(
        levels_event(room, ALICE, {"users": current_users(room), "events": []}), room.state
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_user_levels_that_are_not_integers_are_rejected(version):
    room = room_with_members(version)
    assert "not an integer" in rejection(
        levels_event(room, ALICE, {"users": {**current_users(room), BOB: "ten"}}), room.state
    )
    assert "not an integer" in rejection(
        levels_event(room, ALICE, {"users": {**current_users(room), BOB: True}}), room.state
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_user_ids_in_users_must_be_valid(version):
    room = room_with_members(version)
    assert "invalid user ID" in rejection(
        levels_event(room, ALICE, {"users": {**current_users(room), "bob": 10}}), room.state
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_users_must_be_an_object(version):
    room = room_with_members(version)
    assert "'users' is not an object" in rejection(levels_event(room, ALICE, {"users": []}), room.state)


@pytest.mark.parametrize(("version", "ok"), [("5", True), ("6", False), ("10", False)])
def test_float_user_levels_are_truncated_before_v6_only(version, ok):
    room = room_with_members(version)
    result = rejection(levels_event(room, ALICE, {"users": {**current_users(room), BOB: 10.7}}), room.state)
    assert (result is None) is ok


# -- changes -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_the_first_power_levels_event_is_only_checked_for_format(version):
    room = Room(version)
    room.join(ALICE)
    content = {"users": {} if version == "12" else {ALICE: 100}, "ban": 1000, "events": {"m.room.name": 1000}}
    assert rejection(levels_event(room, ALICE, content), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_raising_a_level_above_ones_own_is_refused(version):
    room = room_with_members(version, events={"m.room.power_levels": 50})
    assert "above the sender" in rejection(
        levels_event(
            room, CAROL, {"users": current_users(room), "events": {"m.room.power_levels": 50}, "ban": 51}
        ),
        room.state,
    )
    assert (
        rejection(
            levels_event(
                room, CAROL, {"users": current_users(room), "events": {"m.room.power_levels": 50}, "ban": 50}
            ),
            room.state,
        )
        is None
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_changing_a_level_currently_above_ones_own_is_refused(version):
    room = room_with_members(version, kick=60, events={"m.room.power_levels": 50})
    content = {"users": current_users(room), "events": {"m.room.power_levels": 50}, "kick": 10}
    assert "current value is above" in rejection(levels_event(room, CAROL, content), room.state)
    content["kick"] = 60
    assert rejection(levels_event(room, CAROL, content), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_removing_a_level_currently_above_ones_own_is_refused(version):
    room = room_with_members(version, kick=60, events={"m.room.power_levels": 50})
    content = {"users": current_users(room), "events": {"m.room.power_levels": 50}}
    assert "'kick'" in rejection(levels_event(room, CAROL, content), room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_event_levels_above_ones_own_cannot_be_set_or_changed(version):
    room = room_with_members(version, events={"m.room.power_levels": 50, "m.room.tombstone": 100})
    base = {"users": current_users(room)}
    too_high = {**base, "events": {"m.room.power_levels": 50, "m.room.tombstone": 100, "m.room.topic": 75}}
    assert "events['m.room.topic']" in rejection(levels_event(room, CAROL, too_high), room.state)
    lowered = {**base, "events": {"m.room.power_levels": 50, "m.room.tombstone": 40}}
    assert "events['m.room.tombstone']" in rejection(levels_event(room, CAROL, lowered), room.state)
    fine = {**base, "events": {"m.room.power_levels": 50, "m.room.tombstone": 100, "m.room.topic": 50}}
    assert rejection(levels_event(room, CAROL, fine), room.state) is None


@pytest.mark.parametrize(("version", "checked"), [("1", False), ("5", False), ("6", True), ("12", True)])
def test_notification_levels_are_checked_from_v6(version, checked):
    room = room_with_members(version, events={"m.room.power_levels": 50})
    content = {
        "users": current_users(room),
        "events": {"m.room.power_levels": 50},
        "notifications": {"room": 99},
    }
    result = rejection(levels_event(room, CAROL, content), room.state)
    if checked:
        assert "notifications" in result
    else:
        assert result is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_user_cannot_change_the_level_of_someone_equal_or_higher(version):
    room = room_with_members(version, events={"m.room.power_levels": 50})
    room.power_levels({"users": {**current_users(room), DAVE: 50}, "events": {"m.room.power_levels": 50}})
    content = {"users": {**current_users(room), DAVE: 0}, "events": {"m.room.power_levels": 50}}
    assert "not below the sender" in rejection(levels_event(room, CAROL, content), room.state)
    content = {"users": {**current_users(room), BOB: 50}, "events": {"m.room.power_levels": 50}}
    assert rejection(levels_event(room, CAROL, content), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_user_may_lower_their_own_level_but_not_raise_it(version):
    room = room_with_members(version, events={"m.room.power_levels": 50})
    lowered = {"users": {**current_users(room), CAROL: 10}, "events": {"m.room.power_levels": 50}}
    assert rejection(levels_event(room, CAROL, lowered), room.state) is None
    raised = {"users": {**current_users(room), CAROL: 51}, "events": {"m.room.power_levels": 50}}
    assert "cannot raise" in rejection(levels_event(room, CAROL, raised), room.state)


@pytest.mark.parametrize("version", V1_9)
def test_before_v10_an_equal_string_value_is_not_a_change(version):
    room = room_with_members(version, kick=60, events={"m.room.power_levels": 50})
    content = {"users": current_users(room), "events": {"m.room.power_levels": 50}, "kick": "60"}
    assert rejection(levels_event(room, CAROL, content), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_power_levels_need_their_required_level(version):
    room = room_with_members(version)
    assert "needs power level" in rejection(
        levels_event(room, BOB, {"users": current_users(room)}), room.state
    )

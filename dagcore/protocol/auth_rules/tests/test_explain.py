"""``explain_event_auth``: the verdict of the auth rules, the rule and the entry that decided."""

from __future__ import annotations

import pytest

from dagcore.protocol.auth_rules import check_event_auth
from dagcore.protocol.auth_rules.explain import explain_event_auth

from .builder import BOB, CAROL, Room, standard_room


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_a_message_from_a_non_member_is_decided_by_the_senders_missing_membership(version: str) -> None:
    room = standard_room(version)
    verdict = explain_event_auth(room.make("m.room.message", "@eve:e.test", {"body": "x"}), room.state)
    assert not verdict.allowed and "not joined" in verdict.reason
    assert verdict.rule == "the sender must be joined to the room"
    assert verdict.deciding == (("m.room.member", "@eve:e.test"), None)


def test_a_state_event_below_the_required_level_names_the_power_levels_event() -> None:
    room: Room = standard_room("11", events={"m.room.name": 50})
    room.join(BOB)
    verdict = explain_event_auth(room.make("m.room.name", BOB, {"name": "n"}, state_key=""), room.state)
    assert not verdict.allowed
    power = room.state[("m.room.power_levels", "")]
    assert verdict.deciding == (("m.room.power_levels", ""), power.event_id)
    assert "power level" in verdict.rule
    # The sender's membership was read before the power levels, in the spec's order.
    keys = [k for k, _ in verdict.consulted]
    assert keys.index(("m.room.member", BOB)) < keys.index(("m.room.power_levels", ""))


def test_an_allowed_event_is_allowed_exactly_when_check_event_auth_allows_it() -> None:
    room = standard_room("11")
    room.join(BOB)
    event = room.make("m.room.message", BOB, {"body": "hello"})
    check_event_auth(event, room.state)  # no AuthError
    verdict = explain_event_auth(event, room.state)
    assert verdict.allowed and verdict.deciding is None
    assert ("m.room.member", BOB) in [k for k, _ in verdict.consulted]


def test_a_rejected_auth_event_is_named_by_the_auth_events_list_rules() -> None:
    room = standard_room("11")
    room.join(CAROL)
    event = room.make("m.room.message", CAROL, {"body": "x"})
    auth = [
        room.state[k] for k in (("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", CAROL))
    ]
    member = auth[2]
    rejected = type(member)(member.pdu, member.room_version, member.event_id, rejected_reason="bad")
    verdict = explain_event_auth(event, {}, auth_events=[auth[0], auth[1], rejected])
    assert not verdict.allowed
    assert verdict.rule == "the rules about the auth_events list"
    assert verdict.deciding == (("m.room.member", CAROL), member.event_id)

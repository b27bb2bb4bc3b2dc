"""Auth events selection and the rules about an event's auth_events list."""

from __future__ import annotations

from typing import Any

import pytest

from dagcore.protocol.auth_rules import AuthError, auth_types_for_event, check_auth_events_list
from dagcore.protocol.events import Event
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS

from .builder import ALICE, ALL_VERSIONS, BOB, CAROL, Room, standard_room

V = KNOWN_ROOM_VERSIONS
BEFORE_V12 = [str(n) for n in range(1, 12)]


def auth_list(room: Room, event: Event) -> list[Event]:
    return [room.events[i] for i in event.auth_event_ids]


def list_rejection(room: Room, event: Event, auth_events: list[Event] | None = None) -> Any:
    try:
        check_auth_events_list(
            event,
            auth_list(room, event) if auth_events is None else auth_events,
            create_event=room.create if room.version.room_id_is_create_event_hash else None,
        )
    except AuthError as exc:
        return exc.reason
    return None


def test_the_create_event_cites_nothing():
    assert (
        auth_types_for_event(V["10"], event_type="m.room.create", state_key="", sender=ALICE, content={})
        == []
    )


@pytest.mark.parametrize("version", BEFORE_V12)
def test_before_v12_every_event_cites_the_create_event(version):
    types = auth_types_for_event(
        V[version], event_type="m.room.message", state_key=None, sender=ALICE, content={}
    )
    assert types == [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", ALICE)]


def test_v12_events_do_not_cite_the_create_event():
    types = auth_types_for_event(
        V["12"], event_type="m.room.message", state_key=None, sender=ALICE, content={}
    )
    assert types == [("m.room.power_levels", ""), ("m.room.member", ALICE)]


@pytest.mark.parametrize("membership", ["join", "invite", "knock"])
def test_joins_invites_and_knocks_cite_the_join_rules(membership):
    types = auth_types_for_event(
        V["10"], event_type="m.room.member", state_key=BOB, sender=BOB, content={"membership": membership}
    )
    assert ("m.room.join_rules", "") in types


@pytest.mark.parametrize("membership", ["leave", "ban"])
def test_leaves_and_bans_do_not_cite_the_join_rules(membership):
    types = auth_types_for_event(
        V["10"], event_type="m.room.member", state_key=BOB, sender=ALICE, content={"membership": membership}
    )
    assert ("m.room.join_rules", "") not in types
    assert ("m.room.member", BOB) in types


def test_a_third_party_invite_cites_the_invite_event_named_by_its_token():
    content = {"membership": "invite", "third_party_invite": {"signed": {"mxid": BOB, "token": "tok"}}}
    types = auth_types_for_event(
        V["10"], event_type="m.room.member", state_key=BOB, sender=ALICE, content=content
    )
    assert ("m.room.third_party_invite", "tok") in types


@pytest.mark.parametrize(("version", "cited"), [("7", False), ("8", True), ("12", True)])
def test_a_restricted_join_cites_the_authorising_member_only_where_restricted_rooms_exist(version, cited):
    content = {"membership": "join", "join_authorised_via_users_server": CAROL}
    types = auth_types_for_event(
        V[version], event_type="m.room.member", state_key=BOB, sender=BOB, content=content
    )
    assert (("m.room.member", CAROL) in types) is cited


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_events_chosen_by_the_selection_pass(version):
    room = standard_room(version)
    event = room.make("m.room.member", BOB, {"membership": "join"}, state_key=BOB)
    assert list_rejection(room, event) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_duplicate_auth_event_types_are_rejected(version):
    room = standard_room(version)
    old_levels = room.state[("m.room.power_levels", "")]
    room.power_levels({"users": dict(old_levels.content["users"]), "ban": 60})
    event = room.make("m.room.message", ALICE, {"body": "x"})
    auth = [*auth_list(room, event), old_levels]
    assert "duplicate" in list_rejection(room, event, auth)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_events_the_selection_does_not_choose_are_rejected(version):
    room = standard_room(version)
    # A message does not cite the join rules.
    event = room.make("m.room.message", ALICE, {"body": "x"})
    auth = [*auth_list(room, event), room.state[("m.room.join_rules", "")]]
    assert "not selected" in list_rejection(room, event, auth)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_rejected_auth_events_are_rejected(version):
    room = standard_room(version)
    event = room.make("m.room.message", ALICE, {"body": "x"})
    auth = auth_list(room, event)
    levels = next(e for e in auth if e.type == "m.room.power_levels")
    rejected = Event(levels.pdu, room.version, levels.event_id, rejected_reason="auth")
    auth = [rejected if e is levels else e for e in auth]
    assert "rejected" in list_rejection(room, event, auth)


@pytest.mark.parametrize("version", BEFORE_V12)
def test_before_v12_auth_events_without_the_create_event_are_rejected(version):
    room = standard_room(version)
    event = room.make("m.room.message", ALICE, {"body": "x"})
    auth = [e for e in auth_list(room, event) if e.type != "m.room.create"]
    assert "m.room.create" in list_rejection(room, event, auth)


def test_v12_auth_events_listing_the_create_event_are_rejected():
    room = standard_room("12")
    event = room.make("m.room.message", ALICE, {"body": "x"})
    assert list_rejection(room, event) is None
    assert "m.room.create" in list_rejection(room, event, [*auth_list(room, event), room.create])


def test_v12_a_room_id_that_does_not_name_the_create_event_is_rejected():
    room = standard_room("12")
    other = standard_room("12")
    event = room.make("m.room.message", ALICE, {"body": "x"})
    try:
        check_auth_events_list(event, auth_list(room, event), create_event=other.create)
    except AuthError as exc:
        assert "room_id" in exc.reason
    else:
        raise AssertionError("a foreign create event was accepted")


def test_v12_a_rejected_create_event_rejects_the_event():
    room = standard_room("12")
    event = room.make("m.room.message", ALICE, {"body": "x"})
    rejected_create = Event(room.create.pdu, room.version, room.create.event_id, rejected_reason="bad")
    with pytest.raises(AuthError, match="rejected"):
        check_auth_events_list(event, auth_list(room, event), create_event=rejected_create)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_auth_events_from_another_room_are_rejected(version):
    room = standard_room(version)
    other = standard_room(version)
    event = room.make("m.room.message", ALICE, {"body": "x"})
    foreign_levels = other.state[("m.room.power_levels", "")]
    auth = [foreign_levels if e.type == "m.room.power_levels" else e for e in auth_list(room, event)]
    assert "another room" in list_rejection(room, event, auth)


def test_an_auth_event_that_is_not_a_state_event_is_rejected():
    room = standard_room("10")
    message = room.add("m.room.message", ALICE, {"body": "x"})
    event = room.make("m.room.message", ALICE, {"body": "y"})
    assert "not a state event" in list_rejection(room, event, [*auth_list(room, event), message])

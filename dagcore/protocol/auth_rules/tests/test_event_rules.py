"""The rules after membership: sender joined, required levels, '@' state keys, aliases,
third-party invite events, v1-v2 redactions, m.federate, missing create events."""

from __future__ import annotations

import pytest

from dagcore.protocol.auth_rules import redaction_applies

from .builder import ALICE, ALL_VERSIONS, BOB, CAROL, DAVE, Room, standard_room
from .conftest import rejection

V1_5 = [str(n) for n in range(1, 6)]
V6_UP = [str(n) for n in range(6, 13)]


def room_with_members(version: str, **power) -> Room:
    room = standard_room(version, users={CAROL: 50}, **power)
    for user in (BOB, CAROL, DAVE):
        room.join(user)
    return room


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_non_member_cannot_send_messages(version):
    room = room_with_members(version)
    assert "not joined" in rejection(room.make("m.room.message", "@eve:e.test", {"body": "x"}), room.state)
    assert rejection(room.make("m.room.message", BOB, {"body": "x"}), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_an_invited_user_cannot_send_messages_yet(version):
    room = room_with_members(version)
    room.member(ALICE, "@eve:e.test", "invite")
    assert "not joined" in rejection(room.make("m.room.message", "@eve:e.test", {"body": "x"}), room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_an_event_below_its_required_level_is_rejected(version):
    room = room_with_members(version, events={"m.room.name": 50}, events_default=10)
    assert "needs power level" in rejection(
        room.make("m.room.name", BOB, {"name": "n"}, state_key=""), room.state
    )
    assert rejection(room.make("m.room.name", CAROL, {"name": "n"}, state_key=""), room.state) is None
    assert "needs power level" in rejection(room.make("m.room.message", BOB, {"body": "x"}), room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_state_events_default_to_level_50(version):
    room = room_with_members(version)
    assert "needs power level 50" in rejection(
        room.make("m.room.topic", BOB, {"topic": "t"}, state_key=""), room.state
    )
    assert rejection(room.make("m.room.topic", CAROL, {"topic": "t"}, state_key=""), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_without_power_levels_only_the_creator_sends_state(version):
    room = Room(version)
    room.join(ALICE)
    room.join_rule("public")
    room.join(BOB)
    assert rejection(room.make("m.room.topic", ALICE, {"topic": "t"}, state_key=""), room.state) is None
    assert "needs power level" in rejection(
        room.make("m.room.topic", BOB, {"topic": "t"}, state_key=""), room.state
    )
    assert rejection(room.make("m.room.message", BOB, {"body": "x"}), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_state_key_naming_another_user_is_rejected(version):
    room = room_with_members(version, state_default=0)
    assert "'@'" in rejection(room.make("m.custom", BOB, {}, state_key=CAROL), room.state)
    assert rejection(room.make("m.custom", BOB, {}, state_key=BOB), room.state) is None
    assert rejection(room.make("m.custom", BOB, {}, state_key="bob"), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_third_party_invite_events_need_the_invite_level(version):
    room = room_with_members(version, invite=50)
    content = {"display_name": "e", "public_key": "AAAA"}
    assert "invite level" in rejection(
        room.make("m.room.third_party_invite", BOB, content, state_key="t"), room.state
    )
    assert (
        rejection(room.make("m.room.third_party_invite", CAROL, content, state_key="t"), room.state) is None
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_non_federating_room_rejects_events_from_other_servers(version):
    room = standard_room(version, create_content={"m.federate": False})
    room.join(DAVE)  # same server as the creator
    assert "federate" in rejection(
        room.make("m.room.member", BOB, {"membership": "join"}, state_key=BOB), room.state
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_federating_room_accepts_events_from_other_servers(version):
    room = standard_room(version, create_content={"m.federate": True})
    assert (
        rejection(room.make("m.room.member", BOB, {"membership": "join"}, state_key=BOB), room.state) is None
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_an_event_checked_against_a_state_without_create_event_is_rejected(version):
    room = room_with_members(version)
    state = {k: v for k, v in room.state.items() if k != ("m.room.create", "")}
    assert "m.room.create" in rejection(room.make("m.room.message", BOB, {"body": "x"}), state)


# -- m.room.aliases ------------------------------------------------------------------------


@pytest.mark.parametrize("version", V1_5)
def test_before_v6_a_server_may_set_its_own_aliases_even_without_membership(version):
    room = room_with_members(version)
    event = room.make("m.room.aliases", "@eve:e.test", {"aliases": ["#x:e.test"]}, state_key="e.test")
    assert rejection(event, room.state) is None


@pytest.mark.parametrize("version", V1_5)
def test_before_v6_a_server_may_not_set_another_servers_aliases(version):
    room = room_with_members(version)
    event = room.make("m.room.aliases", ALICE, {"aliases": ["#x:b.test"]}, state_key="b.test")
    assert "sender's domain" in rejection(event, room.state)


@pytest.mark.parametrize("version", V6_UP)
def test_from_v6_aliases_follow_the_ordinary_rules(version):
    room = room_with_members(version)
    own_server = room.make("m.room.aliases", "@eve:e.test", {"aliases": []}, state_key="e.test")
    assert "not joined" in rejection(own_server, room.state)
    other_server = room.make("m.room.aliases", ALICE, {"aliases": []}, state_key="b.test")
    assert rejection(other_server, room.state) is None


# -- redactions ------------------------------------------------------------------------------


def redaction(room: Room, sender: str, target: str):
    if room.version.updated_redaction_rules:
        return room.make("m.room.redaction", sender, {"redacts": target})
    return room.make("m.room.redaction", sender, {}, extra={"redacts": target})


@pytest.mark.parametrize("version", ["1", "2"])
def test_v1_v2_a_user_below_redact_level_may_only_redact_events_of_their_own_server(version):
    room = room_with_members(version)
    alice_message = room.add("m.room.message", ALICE, {"body": "x"})
    bob_message = room.add("m.room.message", BOB, {"body": "y"})
    assert "another server" in rejection(redaction(room, BOB, alice_message.event_id), room.state)
    assert rejection(redaction(room, BOB, bob_message.event_id), room.state) is None


@pytest.mark.parametrize("version", ["1", "2"])
def test_v1_v2_the_redact_level_allows_redacting_any_event(version):
    room = room_with_members(version)
    bob_message = room.add("m.room.message", BOB, {"body": "y"})
    assert rejection(redaction(room, CAROL, bob_message.event_id), room.state) is None


@pytest.mark.parametrize("version", [str(n) for n in range(3, 13)])
def test_from_v3_redactions_pass_auth_whoever_sent_the_target(version):
    room = room_with_members(version)
    alice_message = room.add("m.room.message", ALICE, {"body": "x"})
    assert rejection(redaction(room, BOB, alice_message.event_id), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_redactions_still_need_their_event_level(version):
    room = room_with_members(version, events={"m.room.redaction": 50})
    alice_message = room.add("m.room.message", ALICE, {"body": "x"})
    assert "needs power level" in rejection(redaction(room, BOB, alice_message.event_id), room.state)


@pytest.mark.parametrize("version", ["3", "11", "12"])
def test_a_redaction_applies_with_the_redact_level_or_from_the_same_server(version):
    room = room_with_members(version)
    alice_message = room.add("m.room.message", ALICE, {"body": "x"})
    dave_message = room.add("m.room.message", DAVE, {"body": "x"})
    assert not redaction_applies(redaction(room, BOB, alice_message.event_id), alice_message, room.state)
    assert redaction_applies(redaction(room, CAROL, alice_message.event_id), alice_message, room.state)
    assert redaction_applies(redaction(room, ALICE, dave_message.event_id), dave_message, room.state)

"""m.room.member joins: first join, public, invite, knock, restricted, knock_restricted, bans."""

from __future__ import annotations

import pytest

from .builder import ALICE, ALL_VERSIONS, BOB, CAROL, DAVE, Room, standard_room
from .conftest import rejection

V7_UP = [str(n) for n in range(7, 13)]
V8_UP = [str(n) for n in range(8, 13)]
V10_UP = ["10", "11", "12"]


def join_event(room: Room, user: str = BOB, **content):
    return room.make("m.room.member", user, {"membership": "join", **content}, state_key=user)


# -- the creator's first join -------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_the_creator_may_join_right_after_the_create_event(version):
    room = Room(version)
    assert rejection(join_event(room, ALICE), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_first_join_by_someone_else_than_the_creator_is_rejected(version):
    room = Room(version)
    assert rejection(join_event(room, DAVE), room.state) is not None


@pytest.mark.parametrize("version", [str(n) for n in range(1, 11)])
def test_before_v11_the_creator_is_the_creator_content_key(version):
    room = Room(version, creator=ALICE, create_content={"creator": DAVE})
    assert rejection(join_event(room, DAVE), room.state) is None
    assert rejection(join_event(room, ALICE), room.state) is not None


@pytest.mark.parametrize("version", ["11", "12"])
def test_from_v11_the_creator_is_the_create_sender_whatever_the_content_says(version):
    room = Room(version, creator=ALICE, create_content={"creator": DAVE})
    assert rejection(join_event(room, ALICE), room.state) is None
    assert rejection(join_event(room, DAVE), room.state) is not None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_the_creator_join_special_case_needs_the_create_event_as_only_prev_event(version):
    room = Room(version)
    event = room.make(
        "m.room.member",
        ALICE,
        {"membership": "join"},
        state_key=ALICE,
        prev_events=[room.create.event_id, "$other"],
    )
    assert rejection(event, room.state) is not None


# -- public and invite ------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_anyone_may_join_a_public_room(version):
    room = standard_room(version, join_rule="public")
    assert rejection(join_event(room), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_user_cannot_join_someone_else(version):
    room = standard_room(version, join_rule="public")
    event = room.make("m.room.member", CAROL, {"membership": "join"}, state_key=BOB)
    assert "themselves" in rejection(event, room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_banned_user_cannot_rejoin_but_an_unbanned_one_can(version):
    room = standard_room(version, join_rule="public")
    room.join(BOB)
    room.member(ALICE, BOB, "ban")
    assert rejection(join_event(room), room.state) == "sender is banned"
    room.member(ALICE, BOB, "leave")
    assert rejection(join_event(room), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_an_invite_only_room_needs_an_invite(version):
    room = standard_room(version, join_rule="invite")
    assert "not invited" in rejection(join_event(room), room.state)
    room.member(ALICE, BOB, "invite")
    assert rejection(join_event(room), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_joined_member_may_rejoin_an_invite_only_room_to_change_profile(version):
    room = standard_room(version, join_rule="invite")
    room.member(ALICE, BOB, "invite")
    room.join(BOB)
    assert rejection(join_event(room, displayname="Bob"), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_room_without_join_rules_behaves_as_invite_only(version):
    room = Room(version)
    room.join(ALICE)
    assert rejection(join_event(room), room.state) is not None
    room.member(ALICE, BOB, "invite")
    assert rejection(join_event(room), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_unknown_join_rules_refuse_joins(version):
    room = standard_room(version, join_rule="private")
    room.member(ALICE, BOB, "invite")
    assert "join rule private" in rejection(join_event(room), room.state)


# -- knock ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", V7_UP)
def test_from_v7_a_knock_room_admits_invited_users(version):
    room = standard_room(version, join_rule="knock")
    assert rejection(join_event(room), room.state) is not None
    room.member(ALICE, BOB, "invite")
    assert rejection(join_event(room), room.state) is None


@pytest.mark.parametrize("version", ["1", "6"])
def test_before_v7_the_knock_join_rule_refuses_even_invited_users(version):
    room = standard_room(version, join_rule="knock")
    room.member(ALICE, BOB, "invite")
    assert rejection(join_event(room), room.state) is not None


# -- restricted ---------------------------------------------------------------------


def restricted_room(version: str, rule: str = "restricted") -> Room:
    room = standard_room(version, join_rule="public", users={CAROL: 50}, invite=50)
    room.join(CAROL)
    room.join_rule(rule, allow=[{"type": "m.room_membership", "room_id": "!space:a.test"}])
    return room


@pytest.mark.parametrize("version", V8_UP)
def test_from_v8_a_restricted_join_authorised_by_a_member_who_can_invite_is_allowed(version):
    room = restricted_room(version)
    assert rejection(join_event(room, join_authorised_via_users_server=CAROL), room.state) is None


@pytest.mark.parametrize("version", V8_UP)
def test_a_restricted_join_without_an_authorising_user_is_rejected(version):
    room = restricted_room(version)
    assert "join_authorised_via_users_server" in rejection(join_event(room), room.state)


@pytest.mark.parametrize("version", V8_UP)
def test_a_restricted_join_authorised_by_a_user_below_the_invite_level_is_rejected(version):
    room = restricted_room(version)
    room.member(ALICE, DAVE, "invite")
    room.join(DAVE)
    assert "cannot invite" in rejection(join_event(room, join_authorised_via_users_server=DAVE), room.state)


@pytest.mark.parametrize("version", V8_UP)
def test_a_restricted_join_authorised_by_a_non_member_is_rejected(version):
    room = restricted_room(version)
    room.member(CAROL, CAROL, "leave")
    assert "not joined" in rejection(join_event(room, join_authorised_via_users_server=CAROL), room.state)


@pytest.mark.parametrize("version", V8_UP)
def test_an_invited_user_joins_a_restricted_room_without_authorisation(version):
    room = restricted_room(version)
    room.member(ALICE, BOB, "invite")
    assert rejection(join_event(room), room.state) is None


@pytest.mark.parametrize("version", V8_UP)
def test_a_banned_user_cannot_join_a_restricted_room_even_when_authorised(version):
    room = restricted_room(version)
    room.member(ALICE, BOB, "ban")
    assert (
        rejection(join_event(room, join_authorised_via_users_server=CAROL), room.state) == "sender is banned"
    )


@pytest.mark.parametrize("version", V8_UP)
def test_join_authorised_via_users_server_must_be_a_user_id(version):
    room = restricted_room(version)
    assert "user ID" in rejection(join_event(room, join_authorised_via_users_server=5), room.state)


@pytest.mark.parametrize("version", V8_UP)
def test_a_signature_check_hook_verifies_the_authorising_server(version):
    from dagcore.protocol.auth_rules import AuthError, check_event_auth

    room = restricted_room(version)
    event = join_event(room, join_authorised_via_users_server=CAROL)
    seen: list[str] = []

    def record(_event, server: str) -> bool:
        seen.append(server)
        return True

    check_event_auth(event, room.state, signature_check=record)
    assert seen == ["c.test"]
    with pytest.raises(AuthError, match="not signed"):
        check_event_auth(event, room.state, signature_check=lambda e, server: False)


@pytest.mark.parametrize("version", ["7"])
def test_before_v8_the_restricted_join_rule_refuses_joins(version):
    room = restricted_room(version)
    assert rejection(join_event(room, join_authorised_via_users_server=CAROL), room.state) is not None


@pytest.mark.parametrize("version", V10_UP)
def test_from_v10_knock_restricted_admits_authorised_joins(version):
    room = restricted_room(version, "knock_restricted")
    assert rejection(join_event(room, join_authorised_via_users_server=CAROL), room.state) is None
    assert rejection(join_event(room), room.state) is not None


@pytest.mark.parametrize("version", ["8", "9"])
def test_before_v10_knock_restricted_refuses_joins(version):
    room = restricted_room(version, "knock_restricted")
    assert "join rule knock_restricted" in rejection(
        join_event(room, join_authorised_via_users_server=CAROL), room.state
    )

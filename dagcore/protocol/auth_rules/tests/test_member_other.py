"""m.room.member invites, leaves, kicks, unbans, bans, knocks and third-party invites."""

from __future__ import annotations

import nacl.signing
import pytest
from canonicaljson import encode_canonical_json
from unpaddedbase64 import encode_base64

from .builder import ALICE, ALL_VERSIONS, BOB, CAROL, DAVE, Room, standard_room
from .conftest import rejection

V7_UP = [str(n) for n in range(7, 13)]


def member_event(room: Room, sender: str, target: str, membership: str, **content):
    return room.make("m.room.member", sender, {"membership": membership, **content}, state_key=target)


def room_with_members(version: str, **power) -> Room:
    """alice (creator), carol at 50, bob and dave at 0, all joined."""
    room = standard_room(version, join_rule="public", users={CAROL: 50}, **power)
    for user in (BOB, CAROL, DAVE):
        room.join(user)
    return room


# -- structure ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_member_event_without_membership_is_rejected(version):
    room = room_with_members(version)
    event = room.make("m.room.member", BOB, {"displayname": "b"}, state_key=BOB)
    assert "membership" in rejection(event, room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_member_event_without_state_key_is_rejected(version):
    room = room_with_members(version)
    event = room.make("m.room.member", BOB, {"membership": "join"})
    assert "state_key" in rejection(event, room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_an_unknown_membership_is_rejected(version):
    room = room_with_members(version)
    assert "unknown membership" in rejection(member_event(room, BOB, BOB, "dance"), room.state)


# -- invite ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_member_at_the_invite_level_may_invite(version):
    room = room_with_members(version, invite=50)
    assert rejection(member_event(room, CAROL, "@eve:e.test", "invite"), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_member_below_the_invite_level_may_not_invite(version):
    room = room_with_members(version, invite=50)
    assert "invite level" in rejection(member_event(room, BOB, "@eve:e.test", "invite"), room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_the_invite_level_defaults_to_zero(version):
    room = room_with_members(version)
    assert rejection(member_event(room, BOB, "@eve:e.test", "invite"), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_non_member_may_not_invite(version):
    room = room_with_members(version)
    assert "not joined" in rejection(member_event(room, "@eve:e.test", "@fay:e.test", "invite"), room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_joined_or_banned_users_cannot_be_invited(version):
    room = room_with_members(version)
    assert "join" in rejection(member_event(room, CAROL, BOB, "invite"), room.state)
    room.member(ALICE, BOB, "ban")
    assert "ban" in rejection(member_event(room, CAROL, BOB, "invite"), room.state)
    room.member(ALICE, BOB, "leave")
    assert rejection(member_event(room, CAROL, BOB, "invite"), room.state) is None


# -- leave and kick -------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_members_and_invitees_may_leave(version):
    room = room_with_members(version)
    assert rejection(member_event(room, BOB, BOB, "leave"), room.state) is None
    room.member(ALICE, "@eve:e.test", "invite")
    assert rejection(member_event(room, "@eve:e.test", "@eve:e.test", "leave"), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_non_members_and_banned_users_cannot_leave(version):
    room = room_with_members(version)
    assert "leave" in rejection(member_event(room, "@eve:e.test", "@eve:e.test", "leave"), room.state)
    room.member(ALICE, BOB, "ban")
    assert "ban" in rejection(member_event(room, BOB, BOB, "leave"), room.state)


@pytest.mark.parametrize("version", V7_UP)
def test_from_v7_a_knocking_user_may_withdraw_the_knock(version):
    room = room_with_members(version)
    room.join_rule("knock")
    room.member("@eve:e.test", "@eve:e.test", "knock")
    assert rejection(member_event(room, "@eve:e.test", "@eve:e.test", "leave"), room.state) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_kick_needs_the_kick_level_and_a_lower_target(version):
    room = room_with_members(version)
    assert rejection(member_event(room, CAROL, BOB, "leave"), room.state) is None
    assert "too low" in rejection(member_event(room, BOB, DAVE, "leave"), room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_user_cannot_kick_someone_of_equal_or_higher_level(version):
    room = room_with_members(version)
    assert "too low" in rejection(member_event(room, CAROL, ALICE, "leave"), room.state)
    room.power_levels({"users": {**room.state[("m.room.power_levels", "")].content["users"], BOB: 50}})
    assert "too low" in rejection(member_event(room, CAROL, BOB, "leave"), room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_non_member_cannot_kick(version):
    room = room_with_members(version)
    room.member(CAROL, CAROL, "leave")
    assert "not joined" in rejection(member_event(room, CAROL, BOB, "leave"), room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_unbanning_needs_the_ban_level_as_well_as_the_kick_level(version):
    room = room_with_members(version, kick=0, ban=50)
    room.member(ALICE, "@eve:e.test", "ban")
    room.power_levels(
        {"users": {**room.state[("m.room.power_levels", "")].content["users"], BOB: 10}, "kick": 0}
    )
    assert "unban" in rejection(member_event(room, BOB, "@eve:e.test", "leave"), room.state)
    assert rejection(member_event(room, CAROL, "@eve:e.test", "leave"), room.state) is None


# -- ban --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_ban_needs_the_ban_level_and_a_lower_target(version):
    room = room_with_members(version)
    assert rejection(member_event(room, CAROL, BOB, "ban"), room.state) is None
    assert "too low" in rejection(member_event(room, BOB, DAVE, "ban"), room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_user_cannot_ban_someone_of_equal_or_higher_level(version):
    room = room_with_members(version)
    assert "too low" in rejection(member_event(room, CAROL, ALICE, "ban"), room.state)
    room.power_levels({"users": {**room.state[("m.room.power_levels", "")].content["users"], BOB: 50}})
    assert "too low" in rejection(member_event(room, CAROL, BOB, "ban"), room.state)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_non_member_cannot_ban_but_may_be_banned(version):
    room = room_with_members(version)
    assert rejection(member_event(room, CAROL, "@eve:e.test", "ban"), room.state) is None
    assert "not joined" in rejection(member_event(room, "@eve:e.test", BOB, "ban"), room.state)


# -- knock ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", V7_UP)
def test_from_v7_anyone_may_knock_on_a_knock_room(version):
    room = room_with_members(version)
    room.join_rule("knock")
    assert rejection(member_event(room, "@eve:e.test", "@eve:e.test", "knock"), room.state) is None


@pytest.mark.parametrize("version", V7_UP)
def test_knocking_on_a_room_whose_join_rule_is_not_knock_is_rejected(version):
    room = room_with_members(version)
    assert "cannot knock" in rejection(member_event(room, "@eve:e.test", "@eve:e.test", "knock"), room.state)


@pytest.mark.parametrize("version", V7_UP)
def test_a_user_can_only_knock_for_themselves(version):
    room = room_with_members(version)
    room.join_rule("knock")
    assert "themselves" in rejection(member_event(room, BOB, "@eve:e.test", "knock"), room.state)


@pytest.mark.parametrize("version", V7_UP)
def test_banned_invited_or_joined_users_cannot_knock(version):
    room = room_with_members(version)
    room.join_rule("knock")
    assert "join" in rejection(member_event(room, BOB, BOB, "knock"), room.state)
    room.member(ALICE, "@eve:e.test", "invite")
    assert "invite" in rejection(member_event(room, "@eve:e.test", "@eve:e.test", "knock"), room.state)
    room.member(ALICE, "@fay:f.test", "ban")
    assert "ban" in rejection(member_event(room, "@fay:f.test", "@fay:f.test", "knock"), room.state)


@pytest.mark.parametrize("version", ["1", "6"])
def test_before_v7_knock_is_an_unknown_membership(version):
    room = room_with_members(version)
    room.join_rule("knock")
    assert "unknown membership" in rejection(
        member_event(room, "@eve:e.test", "@eve:e.test", "knock"), room.state
    )


@pytest.mark.parametrize(("version", "allowed"), [("7", False), ("9", False), ("10", True), ("12", True)])
def test_knock_restricted_accepts_knocks_from_v10(version, allowed):
    room = room_with_members(version)
    room.join_rule("knock_restricted", allow=[])
    result = rejection(member_event(room, "@eve:e.test", "@eve:e.test", "knock"), room.state)
    assert (result is None) is allowed


# -- third-party invites ----------------------------------------------------------------

SIGNING_KEY = nacl.signing.SigningKey(b"\x01" * 32)
OTHER_KEY = nacl.signing.SigningKey(b"\x02" * 32)


def signed_blob(mxid: str, token: str, key: nacl.signing.SigningKey = SIGNING_KEY) -> dict:
    blob = {"mxid": mxid, "token": token, "sender": ALICE}
    signature = key.sign(encode_canonical_json(blob)).signature
    return {**blob, "signatures": {"id.test": {"ed25519:0": encode_base64(signature)}}}


def tpi_room(version: str, *, public_keys_form: bool = False) -> Room:
    room = room_with_members(version)
    public = encode_base64(bytes(SIGNING_KEY.verify_key))
    content: dict = {"display_name": "e...@e.test", "key_validity_url": "https://id.test/check"}
    if public_keys_form:
        content["public_keys"] = [
            {"public_key": encode_base64(bytes(OTHER_KEY.verify_key))},
            {"public_key": public},
        ]
    else:
        content["public_key"] = public
    room.add("m.room.third_party_invite", CAROL, content, state_key="tok")
    return room


def tpi_invite(room: Room, *, sender: str = CAROL, signed: dict | None = None, target: str = "@eve:e.test"):
    signed = signed_blob(target, "tok") if signed is None else signed
    content = {"membership": "invite", "third_party_invite": {"display_name": "e...", "signed": signed}}
    return room.make("m.room.member", sender, content, state_key=target)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_third_party_invite_signed_with_the_invite_events_key_is_allowed(version):
    room = tpi_room(version)
    assert rejection(tpi_invite(room), room.state) is None


@pytest.mark.parametrize("version", ["3", "12"])
def test_a_third_party_invite_may_be_signed_by_any_of_the_public_keys(version):
    room = tpi_room(version, public_keys_form=True)
    assert rejection(tpi_invite(room), room.state) is None


@pytest.mark.parametrize("version", ["3", "12"])
def test_a_third_party_invite_with_a_bad_signature_is_rejected(version):
    room = tpi_room(version)
    blob = signed_blob("@eve:e.test", "tok", key=OTHER_KEY)
    assert "signature" in rejection(tpi_invite(room, signed=blob), room.state)


@pytest.mark.parametrize("version", ["3", "12"])
def test_a_third_party_invite_whose_signed_content_was_altered_is_rejected(version):
    room = tpi_room(version)
    blob = signed_blob("@eve:e.test", "tok")
    blob["sender"] = BOB
    assert "signature" in rejection(tpi_invite(room, signed=blob), room.state)


@pytest.mark.parametrize("version", ["3", "12"])
def test_a_third_party_invite_from_another_sender_than_the_invite_events_is_rejected(version):
    room = tpi_room(version)
    assert "sender" in rejection(tpi_invite(room, sender=ALICE), room.state)


@pytest.mark.parametrize("version", ["3", "12"])
def test_a_third_party_invite_for_a_banned_user_is_rejected(version):
    room = tpi_room(version)
    room.member(ALICE, "@eve:e.test", "ban")
    assert "banned" in rejection(tpi_invite(room), room.state)


@pytest.mark.parametrize("version", ["3", "12"])
def test_a_third_party_invite_whose_mxid_is_not_the_state_key_is_rejected(version):
    room = tpi_room(version)
    blob = signed_blob("@fay:e.test", "tok")
    assert "mxid" in rejection(tpi_invite(room, signed=blob), room.state)


@pytest.mark.parametrize("version", ["3", "12"])
def test_a_third_party_invite_without_signed_or_token_is_rejected(version):
    room = tpi_room(version)
    event = room.make(
        "m.room.member", CAROL, {"membership": "invite", "third_party_invite": {}}, state_key="@eve:e.test"
    )
    assert "signed" in rejection(event, room.state)
    blob = signed_blob("@eve:e.test", "tok")
    del blob["token"]
    assert "token" in rejection(tpi_invite(room, signed=blob), room.state)


@pytest.mark.parametrize("version", ["3", "12"])
def test_a_third_party_invite_with_an_unknown_token_is_rejected(version):
    room = tpi_room(version)
    blob = signed_blob("@eve:e.test", "other")
    assert "token" in rejection(tpi_invite(room, signed=blob), room.state)

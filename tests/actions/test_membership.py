"""Membership actions in-process: every refusal beside the permitted case."""

from __future__ import annotations

import pytest

from dagcore.actions import membership
from dagcore.http.errors import MatrixError
from dagcore.store import rooms as room_store
from tests.actions.roomkit import dagma_with, invite, join, make_room, make_user, set_state

pytestmark = pytest.mark.django_db


def _membership(room_id: str, user_id: str) -> str | None:
    room_row = room_store.get_room(room_id)
    assert room_row is not None
    row = room_store.get_membership(room_row, user_id)
    return None if row is None else row.membership


def _status(fn, **kw) -> int:
    with pytest.raises(MatrixError) as exc:
        fn(**kw)
    return exc.value.status


def test_invite_only_room_refuses_a_stranger_but_admits_the_invited() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="private_chat")
    assert _status(membership.check_join_room, user=bob, room_id_or_alias=room) == 403
    invite(alice, room, bob)
    join(bob, room)
    assert room in membership.get_joined_room_ids(user_id=bob.user_id)


def test_a_banned_user_cannot_rejoin_until_unbanned() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    membership.check_ban_user(sender=alice.user_id, room_id=room, target=bob.user_id, reason="spam")
    assert _status(membership.check_join_room, user=bob, room_id_or_alias=room) == 403
    membership.check_unban_user(sender=alice.user_id, room_id=room, target=bob.user_id)
    join(bob, room)
    assert room in membership.get_joined_room_ids(user_id=bob.user_id)


def test_kick_of_an_equal_power_level_is_refused_while_a_lower_one_is_kicked() -> None:
    alice, bob, carol, dave = make_user(), make_user(), make_user(), make_user()
    room = make_room(alice, preset="public_chat", room_version="11")
    for u in (bob, carol, dave):
        join(u, room)
    set_state(
        alice,
        room,
        "m.room.power_levels",
        {"users": {alice.user_id: 100, bob.user_id: 50, carol.user_id: 50}, "kick": 50, "ban": 50},
    )
    assert _status(membership.check_kick_user, sender=bob.user_id, room_id=room, target=carol.user_id) == 403
    assert _status(membership.check_ban_user, sender=bob.user_id, room_id=room, target=carol.user_id) == 403
    membership.check_kick_user(sender=bob.user_id, room_id=room, target=dave.user_id)
    room_row = room_store.get_room(room)
    assert room_row is not None
    row = room_store.get_membership(room_row, dave.user_id)
    assert row is not None and row.membership == "leave"


def test_power_above_ones_own_cannot_be_granted() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat", room_version="11")
    join(bob, room)
    set_state(
        alice,
        room,
        "m.room.power_levels",
        {"users": {alice.user_id: 100, bob.user_id: 50}, "state_default": 50},
    )
    with pytest.raises(MatrixError) as exc:
        set_state(bob, room, "m.room.power_levels", {"users": {alice.user_id: 100, bob.user_id: 75}})
    assert exc.value.status == 403
    set_state(
        bob,
        room,
        "m.room.power_levels",
        {"users": {alice.user_id: 100, bob.user_id: 50}, "state_default": 50, "ban": 50},
    )


def test_invites_need_the_invite_level() -> None:
    alice, bob, carol = make_user(), make_user(), make_user()
    room = make_room(alice, preset="public_chat")  # public_chat: invite level 50
    join(bob, room)
    assert (
        _status(membership.check_invite_user, inviter=bob.user_id, room_id=room, invitee=carol.user_id) == 403
    )
    assert _membership(room, carol.user_id) is None  # the refused invite left nothing
    membership.check_invite_user(inviter=alice.user_id, room_id=room, invitee=carol.user_id)
    assert _membership(room, carol.user_id) == "invite"


def test_invites_to_unknown_local_users_are_404_and_to_unreachable_remote_users_502_naming_the_server(
    settings,
) -> None:
    # No server may be contacted: the remote invite fails before anything goes on the wire.
    settings.DAGMA = dagma_with(federation_domain_whitelist=["friend.example"])
    alice = make_user()
    room = make_room(alice)
    assert (
        _status(
            membership.check_invite_user,
            inviter=alice.user_id,
            room_id=room,
            invitee="@ghost:test.dagma.local",
        )
        == 404
    )
    with pytest.raises(MatrixError) as err:
        membership.check_invite_user(inviter=alice.user_id, room_id=room, invitee="@x:elsewhere.example")
    assert err.value.status == 502 and "elsewhere.example" in err.value.error
    assert _membership(room, "@x:elsewhere.example") is None
    assert (
        _status(membership.check_invite_user, inviter=alice.user_id, room_id=room, invitee="not a user")
        == 400
    )


def test_forget_is_refused_while_joined_and_allowed_after_leaving() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    assert _status(membership.check_forget_room, user_id=bob.user_id, room_id=room) == 400
    membership.check_leave_room(user_id=bob.user_id, room_id=room)
    membership.check_forget_room(user_id=bob.user_id, room_id=room)
    assert room in room_store.get_forgotten_room_ids(bob.user_id)
    join(bob, room)
    assert room not in room_store.get_forgotten_room_ids(bob.user_id)


def test_knocking_needs_a_knock_room_and_is_refused_elsewhere() -> None:
    alice, bob = make_user(), make_user()
    knock_room = make_room(
        alice, initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]
    )
    invite_room = make_room(alice)
    assert _status(membership.check_knock_room, user=bob, room_id_or_alias=invite_room) == 403
    membership.check_knock_room(user=bob, room_id_or_alias=knock_room, reason="let me in")
    room_row = room_store.get_room(knock_room)
    assert room_row is not None
    row = room_store.get_membership(room_row, bob.user_id)
    assert row is not None and row.membership == "knock"


def test_joining_by_local_alias_works_and_unknown_aliases_are_404(settings) -> None:
    settings.DAGMA = dagma_with(federation_domain_whitelist=["friend.example"])  # nothing on the wire
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat", room_alias_name="lobby")
    assert membership.check_join_room(user=bob, room_id_or_alias="#lobby:test.dagma.local") == room
    assert _status(membership.check_join_room, user=bob, room_id_or_alias="#nothere:test.dagma.local") == 404
    # Another server's alias is asked for over federation: one that cannot be reached is 502, named.
    with pytest.raises(MatrixError) as err:
        membership.check_join_room(user=bob, room_id_or_alias="#far:remote.example")
    assert err.value.status == 502 and "remote.example" in err.value.error


def test_joining_twice_sends_nothing_new() -> None:
    alice = make_user()
    room = make_room(alice, preset="public_chat")
    room_row = room_store.get_room(room)
    assert room_row is not None
    before = room_store.get_membership(room_row, alice.user_id)
    join(alice, room)
    after = room_store.get_membership(room_row, alice.user_id)
    assert before is not None and after is not None and before.event_id == after.event_id


def test_restricted_rooms_admit_members_of_an_allowed_room_only() -> None:
    alice, bob, carol = make_user(), make_user(), make_user()
    space = make_room(alice, preset="public_chat")
    join(bob, space)
    room = make_room(
        alice,
        room_version="10",
        initial_state=[
            {
                "type": "m.room.join_rules",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": space}],
                },
            }
        ],
    )
    assert _status(membership.check_join_room, user=carol, room_id_or_alias=room) == 403
    assert _membership(room, carol.user_id) is None
    join(bob, room)
    assert _membership(room, bob.user_id) == "join"

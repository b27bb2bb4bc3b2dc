"""Room upgrades in-process."""

from __future__ import annotations

import pytest
from django.conf import settings

from dagcore.actions.upgrade_room import check_upgrade_room
from dagcore.http.errors import MatrixError
from dagcore.store import directory as directory_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from tests.actions.roomkit import join, make_room, make_user, say, set_state

pytestmark = pytest.mark.django_db


def _state(room_id: str, etype: str, skey: str = ""):
    room = room_store.get_room(room_id)
    assert room is not None
    return state_store.get_current_state_events(room, [(etype, skey)]).get((etype, skey))


@pytest.mark.parametrize(("old", "new"), [("10", "11"), ("11", "12"), ("12", "12")])
def test_upgrade_moves_state_aliases_and_bans_and_tombstones_the_old_room(old: str, new: str) -> None:
    alice, bob, troll = make_user(), make_user(), make_user()
    room = make_room(
        alice,
        preset="public_chat",
        room_version=old,
        name="Old name",
        topic="T",
        room_alias_name=f"up{old}{new}",
        visibility="public",
    )
    join(bob, room)
    join(troll, room)
    from dagcore.actions.membership import check_ban_user

    check_ban_user(sender=alice.user_id, room_id=room, target=troll.user_id)
    say(alice, room, "last words")
    new_room = check_upgrade_room(user=alice, room_id=room, new_version=new)

    assert _state(room, "m.room.tombstone").content["replacement_room"] == new_room
    create = _state(new_room, "m.room.create")
    assert create.content["predecessor"]["room_id"] == room
    assert _state(new_room, "m.room.name").content["name"] == "Old name"
    assert _state(new_room, "m.room.join_rules").content["join_rule"] == "public"
    assert _state(new_room, "m.room.member", troll.user_id).membership == "ban"
    assert (
        _state(new_room, "m.room.canonical_alias").content["alias"] == f"#up{old}{new}:{settings.SERVER_NAME}"
    )
    alias = directory_store.get_alias(f"#up{old}{new}:{settings.SERVER_NAME}")
    assert alias is not None and alias.room_id == new_room
    old_row, new_row = room_store.get_room(room), room_store.get_room(new_room)
    assert old_row is not None and new_row is not None
    assert new_row.is_public and not old_row.is_public
    assert new_row.room_version == new
    old_pl = _state(room, "m.room.power_levels").content
    assert old_pl["events_default"] >= 50 and old_pl["invite"] >= 50
    # Ordinary members can no longer talk in the old room.
    with pytest.raises(MatrixError):
        say(bob, room, "still here?")
    # The upgrader keeps control of the new room.
    set_state(alice, new_room, "m.room.topic", {"topic": "new topic"})


def test_upgrade_needs_the_tombstone_level_and_a_supported_version() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    with pytest.raises(MatrixError) as exc:
        check_upgrade_room(user=bob, room_id=room, new_version="12")
    assert exc.value.status == 403
    for bad in ("1", "999"):
        with pytest.raises(MatrixError) as exc:
            check_upgrade_room(user=alice, room_id=room, new_version=bad)
        assert exc.value.errcode == "M_UNSUPPORTED_ROOM_VERSION"
    assert check_upgrade_room(user=alice, room_id=room, new_version="12")
    with pytest.raises(MatrixError):
        check_upgrade_room(user=alice, room_id=room, new_version="12")


def test_v12_upgrade_makes_additional_creators() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat", room_version="11")
    join(bob, room)
    new_room = check_upgrade_room(
        user=alice, room_id=room, new_version="12", additional_creators=[bob.user_id]
    )
    create = _state(new_room, "m.room.create")
    assert create.content["additional_creators"] == [bob.user_id]
    users = _state(new_room, "m.room.power_levels").content.get("users", {})
    assert alice.user_id not in users and bob.user_id not in users

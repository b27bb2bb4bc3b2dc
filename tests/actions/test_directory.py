"""Aliases, publication and the public room list, in-process."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from dagcore.actions import directory
from dagcore.http.errors import MatrixError
from dagcore.store import rooms as room_store
from tests.actions.roomkit import dagma_with, join, make_room, make_user, set_state

pytestmark = pytest.mark.django_db
S = settings.SERVER_NAME


def _err(fn, **kw) -> MatrixError:
    with pytest.raises(MatrixError) as exc:
        fn(**kw)
    return exc.value


def test_aliases_need_membership_and_cannot_be_overwritten() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice)
    assert _err(directory.check_create_alias, user=bob, alias=f"#a1:{S}", room_id=room).status == 403
    directory.check_create_alias(user=alice, alias=f"#a1:{S}", room_id=room)
    assert directory.get_alias_target(alias=f"#a1:{S}")[0] == room
    clash = _err(directory.check_create_alias, user=alice, alias=f"#a1:{S}", room_id=room)
    assert (clash.status, clash.errcode) == (409, "M_UNKNOWN")
    assert (
        _err(directory.check_create_alias, user=alice, alias="#a1:elsewhere.example", room_id=room).status
        == 400
    )


def test_alias_deletion_by_strangers_is_refused_by_creator_and_room_admin_allowed() -> None:
    alice, bob, carol = make_user(), make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    directory.check_create_alias(user=bob, alias=f"#bobs:{S}", room_id=room)
    directory.check_create_alias(user=bob, alias=f"#bobs2:{S}", room_id=room)
    assert _err(directory.check_delete_alias, user=carol, alias=f"#bobs:{S}").status == 403
    directory.check_delete_alias(user=bob, alias=f"#bobs:{S}")  # creator
    directory.check_delete_alias(user=alice, alias=f"#bobs2:{S}")  # room admin
    assert _err(directory.get_alias_target, alias=f"#bobs:{S}").status == 404


def test_deleting_the_canonical_alias_updates_the_canonical_alias_event() -> None:
    alice = make_user()
    room = make_room(alice, room_alias_name="canonical-gone")
    directory.check_delete_alias(user=alice, alias=f"#canonical-gone:{S}")
    room_row = room_store.get_room(room)
    assert room_row is not None
    from dagcore.store import state as state_store

    content = state_store.get_current_state_events(room_row, [("m.room.canonical_alias", "")])[
        ("m.room.canonical_alias", "")
    ].content
    assert "alias" not in content


def test_publication_needs_room_power_and_the_operator_rules() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    assert (
        _err(directory.check_set_room_visibility, user=bob, room_id=room, visibility="public").status == 403
    )
    directory.check_set_room_visibility(user=alice, room_id=room, visibility="public")
    assert directory.get_room_visibility(room_id=room) == "public"
    rules = [{"user_id": "@nobody:*", "action": "allow"}, {"action": "deny"}]
    with override_settings(DAGMA=dagma_with(room_list_publication_rules=rules)):
        other = make_room(alice)
        err = _err(directory.check_set_room_visibility, user=alice, room_id=other, visibility="public")
        assert err.status == 403
    assert directory.is_publication_allowed(user_id=alice.user_id, room_id=room, aliases=[])


def test_public_rooms_paginate_largest_first_and_search_by_name() -> None:
    alice = make_user()
    rooms = [make_room(alice, visibility="public", name=f"room {i}") for i in range(5)]
    for i, room in enumerate(rooms):
        for _ in range(i):
            join(make_user(), room)
    set_state(alice, rooms[0], "m.room.topic", {"topic": "needle in a haystack"})
    first = directory.get_public_rooms(limit=2, since=None)
    assert [c["room_id"] for c in first.chunk] == [rooms[4], rooms[3]]
    assert first.next_batch and first.prev_batch is None and first.total == 5
    second = directory.get_public_rooms(limit=2, since=first.next_batch)
    assert [c["room_id"] for c in second.chunk] == [rooms[2], rooms[1]]
    assert second.prev_batch == "o0"
    last = directory.get_public_rooms(limit=2, since=second.next_batch)
    assert [c["room_id"] for c in last.chunk] == [rooms[0]] and last.next_batch is None
    found = directory.get_public_rooms(limit=10, since=None, search_term="NEEDLE")
    assert [c["room_id"] for c in found.chunk] == [rooms[0]]
    assert found.chunk[0]["num_joined_members"] == 1 and found.chunk[0]["join_rule"] == "public"
    assert _err(directory.get_public_rooms, limit=1, since="garbage").status == 400


def test_public_rooms_filter_by_room_type() -> None:
    alice = make_user()
    space = make_room(alice, visibility="public", creation_content={"type": "m.space"})
    plain = make_room(alice, visibility="public")
    spaces = directory.get_public_rooms(limit=10, since=None, room_types=["m.space"])
    assert [c["room_id"] for c in spaces.chunk] == [space]
    plain_only = directory.get_public_rooms(limit=10, since=None, room_types=[None])
    assert [c["room_id"] for c in plain_only.chunk] == [plain]

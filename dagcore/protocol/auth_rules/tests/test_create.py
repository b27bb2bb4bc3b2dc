"""Rule 1: m.room.create, per room version."""

from __future__ import annotations

import pytest

from .builder import ALICE, ALL_VERSIONS, BOB, Room
from .conftest import rejection

PRE_V11 = [str(n) for n in range(1, 11)]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_well_formed_create_event_is_allowed(version):
    room = Room(version)
    assert rejection(room.create, {}) is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_create_event_with_prev_events_is_rejected(version):
    room = Room(version)
    content = dict(room.create.content)
    bad = room.make(
        "m.room.create", ALICE, content, state_key="", prev_events=[room.create.event_id], state={}
    )
    assert "prev_events" in rejection(bad, {})


@pytest.mark.parametrize("version", [str(n) for n in range(1, 12)])
def test_a_create_event_whose_room_id_domain_is_not_the_senders_is_rejected(version):
    room = Room(version)
    content = dict(room.create.content)
    if "creator" in content:
        content["creator"] = BOB
    bad = room.make("m.room.create", BOB, content, state_key="", prev_events=[], state={})
    assert "domain" in rejection(bad, {})


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_create_event_naming_an_unknown_room_version_is_rejected(version):
    room = Room(version, create_content={"room_version": "999"})
    assert "unknown room version" in rejection(room.create, {})


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_create_event_without_room_version_is_allowed(version):
    room = Room(version)
    del room.create.content["room_version"]
    assert rejection(room.create, {}) is None


@pytest.mark.parametrize("version", PRE_V11)
def test_before_v11_a_create_event_needs_a_creator(version):
    room = Room(version)
    del room.create.content["creator"]
    assert "creator" in rejection(room.create, {})


@pytest.mark.parametrize("version", ["11", "12"])
def test_from_v11_a_create_event_needs_no_creator(version):
    room = Room(version)
    assert "creator" not in room.create.content
    assert rejection(room.create, {}) is None


def test_v12_a_create_event_carrying_a_room_id_is_rejected():
    room = Room("12")
    bad = room.make(
        "m.room.create",
        ALICE,
        {"room_version": "12"},
        state_key="",
        prev_events=[],
        extra={"room_id": "!x:a.test"},
    )
    assert "room_id" in rejection(bad, {})


@pytest.mark.parametrize(
    ("additional", "ok"),
    [
        ([BOB], True),
        ([], True),
        ([BOB, "@carol:c.test:8448"], True),
        ("@bob:b.test", False),
        ([BOB, 5], False),
        (["bob"], False),
        (["@bob"], False),
        (["@:b.test"], False),
    ],
)
def test_v12_additional_creators_must_be_a_list_of_valid_user_ids(additional, ok):
    room = Room("12", create_content={"additional_creators": additional})
    result = rejection(room.create, {})
    if ok:
        assert result is None
    else:
        assert "additional_creators" in result


def test_before_v12_additional_creators_is_not_an_auth_concern():
    room = Room("11", create_content={"additional_creators": "junk"})
    assert rejection(room.create, {}) is None

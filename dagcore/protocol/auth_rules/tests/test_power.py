"""Power level values and defaults."""

from __future__ import annotations

import pytest

from dagcore.protocol.auth_rules import get_named_level, get_required_level
from dagcore.protocol.auth_rules.ids import is_valid_user_id
from dagcore.protocol.auth_rules.power import parse_level
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS

from .builder import Room, standard_room

V = KNOWN_ROOM_VERSIONS


@pytest.mark.parametrize(
    ("value", "expected"),
    [("100", 100), ("000100", 100), ("+100", 100), ("-100", -100), (" 100 ", 100), (" -0100 ", -100)],
)
def test_v1_to_v9_accept_the_specs_integer_strings(value, expected):
    assert parse_level(value, V["9"]) == expected
    assert parse_level(value, V["10"]) is None


@pytest.mark.parametrize("value", ["1.5", "1e3", "++1", "", "ten", "1 0"])
def test_strings_that_are_not_integers_are_never_levels(value):
    assert parse_level(value, V["1"]) is None


def test_floats_truncate_before_v6_and_are_invalid_after():
    assert parse_level(51146.98, V["5"]) == 51146
    assert parse_level(-1.5, V["1"]) == -1
    assert parse_level(float("inf"), V["1"]) is None
    assert parse_level(50.0, V["6"]) is None


def test_booleans_are_not_levels():
    assert parse_level(True, V["1"]) is None
    assert parse_level(False, V["12"]) is None


@pytest.mark.parametrize("version", ["1", "12"])
def test_named_levels_default_to_50_except_invite_at_0(version):
    room = Room(version)
    assert {n: get_named_level(n, room.state) for n in ("ban", "kick", "redact", "invite")} == {
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
    }
    room = standard_room(version)
    assert get_named_level("invite", room.state) == 0
    assert get_named_level("kick", room.state) == 50


@pytest.mark.parametrize("version", ["1", "12"])
def test_required_levels(version):
    room = Room(version)
    assert get_required_level("m.room.topic", is_state=True, state=room.state) == 50
    assert get_required_level("m.room.message", is_state=False, state=room.state) == 0
    room = standard_room(version, state_default=20, events_default=5, events={"m.room.topic": 70})
    assert get_required_level("m.room.topic", is_state=True, state=room.state) == 70
    assert get_required_level("m.room.name", is_state=True, state=room.state) == 20
    assert get_required_level("m.room.message", is_state=False, state=room.state) == 5


@pytest.mark.parametrize(
    ("user_id", "ok"),
    [
        ("@alice:example.org", True),
        ("@alice:example.org:8448", True),
        ("@alice:[::1]:8448", True),
        ("@alice:1.2.3.4", True),
        ("@Alice=+/x:example.org", True),
        ("alice:example.org", False),
        ("@alice", False),
        ("@:example.org", False),
        ("@al ice:example.org", False),
        ("@alice:exa_mple.org", False),
        ("@alice:[::1", False),
        ("@alice:example.org:port", False),
        ("@" + "a" * 250 + ":example.org", False),
    ],
)
def test_user_id_validation(user_id, ok):
    assert is_valid_user_id(user_id) is ok

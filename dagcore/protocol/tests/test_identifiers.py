"""Identifier grammar.

Spec: https://spec.matrix.org/v1.19/appendices/#identifier-grammar.
"""

from __future__ import annotations

from typing import Any

import pytest

from dagcore.protocol.identifiers import (
    is_valid_event_id,
    is_valid_new_localpart,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_server_name,
    is_valid_user_id,
    parse_user_id,
    split_server_name,
)
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS

V = KNOWN_ROOM_VERSIONS
HASH_URLSAFE = "Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"  # the spec's v4 example shape
HASH_STANDARD = "acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk"


# -- server names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "split"),
    [
        # The spec's examples of valid server names.
        ("matrix.org", ("matrix.org", None)),
        ("matrix.org:8888", ("matrix.org", 8888)),
        ("1.2.3.4", ("1.2.3.4", None)),
        ("1.2.3.4:1234", ("1.2.3.4", 1234)),
        ("[1234:5678::abcd]", ("[1234:5678::abcd]", None)),
        ("[1234:5678::abcd]:5678", ("[1234:5678::abcd]", 5678)),
        ("localhost", ("localhost", None)),
        ("MATRIX.org", ("MATRIX.org", None)),  # case is kept, not folded
        ("[::1]:8448", ("[::1]", 8448)),
        ("[::ffff:1.2.3.4]", ("[::ffff:1.2.3.4]", None)),
        ("a" * 255, ("a" * 255, None)),
    ],
)
def test_spec_server_name_examples_are_valid(name: str, split: tuple[str, int | None]) -> None:
    assert is_valid_server_name(name)
    assert split_server_name(name) == split


@pytest.mark.parametrize(
    "name",
    [
        "",
        ":8448",
        "matrix.org:",
        "matrix.org:123456",
        "matrix.org:12a",
        "matrix.org:-1",
        "matrix org",
        "matrix_org",
        "mätrix.org",
        "matrix.org/path",
        "1.2.3.256",
        "[1234:5678::abcd",
        "[::1]x",
        "[not:ipv6::zz]",
        "[1:2:3:4:5:6:7:8:9]",
        "::1",
        "[]",
        "a" * 256,
        "matrix.org:\uff18\uff14\uff14\uff18",  # fullwidth digits are not DIGIT
        None,
        42,
    ],
)
def test_invalid_server_names_are_refused(name: Any) -> None:
    assert not is_valid_server_name(name)


# -- user IDs ---------------------------------------------------------------------------------


def test_a_user_id_is_split_at_the_first_colon() -> None:
    assert parse_user_id("@alice:example.org:8448") == ("alice", "example.org:8448")
    assert parse_user_id("@bob:[::1]:80") == ("bob", "[::1]:80")


@pytest.mark.parametrize("user_id", ["@alice:example.org", "@a.b_c=d-e/f+g:example.org", "@0:1.2.3.4"])
def test_current_grammar_user_ids_are_valid_strictly_and_historically(user_id: str) -> None:
    assert is_valid_user_id(user_id, historical=False)
    assert is_valid_user_id(user_id)


@pytest.mark.parametrize(
    "user_id",
    ["@Alice:example.org", "@:example.org", "@al ice:example.org", "@ünï:example.org", "@a\x01b:example.org"],
)
def test_historical_user_ids_are_accepted_only_in_historical_mode(user_id: str) -> None:
    assert is_valid_user_id(user_id)
    assert not is_valid_user_id(user_id, historical=False)


@pytest.mark.parametrize(
    "user_id",
    [
        "alice:example.org",
        "@alice",
        "@alice:",
        "@alice:bad host",
        "@a\x00b:example.org",
        "@\ud800:example.org",
        "#alice:example.org",
        None,
        5,
    ],
)
def test_malformed_user_ids_are_refused(user_id: Any) -> None:
    assert not is_valid_user_id(user_id)
    with pytest.raises(ValueError):
        parse_user_id(user_id)


def test_user_ids_are_limited_to_255_bytes_including_multibyte_localparts() -> None:
    server = "example.org"
    fits = "@" + "a" * (255 - len(server) - 2) + ":" + server
    assert len(fits.encode()) == 255 and is_valid_user_id(fits, historical=False)
    assert not is_valid_user_id("@a" + fits[1:])
    # 2-byte characters: 122 of them is 244 bytes + 13 = 257 bytes, over the limit.
    assert not is_valid_user_id("@" + "é" * 122 + ":" + server)
    assert is_valid_user_id("@" + "é" * 120 + ":" + server)


@pytest.mark.parametrize("localpart", ["alice", "a.b_c=d-e/f+g", "0", "x" * 200])
def test_new_localparts_may_use_only_the_current_character_set(localpart: str) -> None:
    assert is_valid_new_localpart(localpart)


@pytest.mark.parametrize("localpart", ["", "Alice", "al ice", "al:ice", "émile", "a*b", "a#b", "a@b", None])
def test_new_localparts_refuse_other_characters_and_are_never_lower_cased(localpart: Any) -> None:
    assert not is_valid_new_localpart(localpart)


def test_a_new_localpart_is_checked_against_the_255_byte_user_id_limit_when_given_the_server() -> None:
    server = "example.org"
    assert is_valid_new_localpart("a" * 242, server_name=server)
    assert not is_valid_new_localpart("a" * 243, server_name=server)


# -- room IDs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [str(n) for n in range(1, 12)])
def test_v1_to_v11_room_ids_have_a_domain(version: str) -> None:
    assert is_valid_room_id("!abcDEF123:example.org", V[version])
    assert is_valid_room_id("!opaque with spaces:example.org:8448", V[version])
    assert not is_valid_room_id("!" + HASH_URLSAFE, V[version])


def test_v12_room_ids_are_43_url_safe_base64_characters() -> None:
    assert is_valid_room_id("!" + HASH_URLSAFE, V["12"])
    assert not is_valid_room_id("!abc:example.org", V["12"])
    assert not is_valid_room_id("!" + HASH_STANDARD, V["12"])  # contains "/"
    assert not is_valid_room_id("!" + HASH_URLSAFE[:-1], V["12"])
    assert not is_valid_room_id("!" + HASH_URLSAFE + "A", V["12"])
    assert not is_valid_room_id("$" + HASH_URLSAFE, V["12"])


def test_without_a_room_version_either_room_id_form_is_accepted() -> None:
    assert is_valid_room_id("!abc:example.org")
    assert is_valid_room_id("!" + HASH_URLSAFE)
    assert not is_valid_room_id("!abc")


@pytest.mark.parametrize(
    "room_id",
    [
        "abc:example.org",
        "!abc:",
        "!abc:bad host",
        "!a\x00b:example.org",
        "!" + "a" * 250 + ":example.org",
        None,
    ],
)
def test_malformed_room_ids_are_refused(room_id: Any) -> None:
    assert not is_valid_room_id(room_id)


# -- event IDs ------------------------------------------------------------------------------------


def test_event_id_formats_per_room_version() -> None:
    for version in ("1", "2"):
        assert is_valid_event_id("$a4ecee13e2accdadf56c1025:example.com", V[version])
        assert not is_valid_event_id("$" + HASH_URLSAFE, V[version])
    assert is_valid_event_id("$" + HASH_STANDARD, V["3"])
    assert not is_valid_event_id("$" + HASH_URLSAFE, V["3"])  # "-" and "_" are not standard base64
    for version in ("4", "10", "11", "12"):
        assert is_valid_event_id("$" + HASH_URLSAFE, V[version])
        assert not is_valid_event_id("$" + HASH_STANDARD, V[version])
        assert not is_valid_event_id("$abc:example.org", V[version])


def test_without_a_room_version_any_sigiled_event_id_within_255_bytes_is_accepted() -> None:
    assert is_valid_event_id("$x")
    assert is_valid_event_id("$" + HASH_URLSAFE)
    assert not is_valid_event_id("$")
    assert not is_valid_event_id("x")
    assert not is_valid_event_id("$" + "a" * 255)
    assert not is_valid_event_id("$a\x00")


# -- room aliases ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["#room:example.org", "#Ünïcode room:example.org:8448", "#:example.org"])
def test_room_aliases_allow_any_localpart_but_colon_and_nul(alias: str) -> None:
    assert is_valid_room_alias(alias)


@pytest.mark.parametrize(
    "alias",
    ["room:example.org", "#room", "#room:", "#ro\x00om:example.org", "#" + "a" * 250 + ":example.org", None],
)
def test_malformed_room_aliases_are_refused(alias: Any) -> None:
    assert not is_valid_room_alias(alias)

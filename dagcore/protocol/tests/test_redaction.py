"""The redaction algorithm, version by version.

Spec: https://spec.matrix.org/v1.19/client-server-api/#redactions and the
"Redactions" sections of https://spec.matrix.org/v1.19/rooms/v1/ ... v12.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS

V = KNOWN_ROOM_VERSIONS
ALL = [str(n) for n in range(1, 13)]


def _event(event_type: str, content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": event_type,
        "state_key": "",
        "sender": "@alice:example.org",
        "room_id": "!room:example.org",
        "origin": "example.org",
        "origin_server_ts": 1234,
        "depth": 7,
        "prev_events": ["$prev"],
        "auth_events": ["$auth"],
        "prev_state": [],
        "membership": "join",
        "hashes": {"sha256": "hash"},
        "signatures": {"example.org": {"ed25519:a": "sig"}},
        "unsigned": {"age": 10, "age_ts": 5, "redacted_because": {}},
        "content": content,
        "custom_top_level": "dropped",
        **extra,
    }


def _redacted_content(version: str, event_type: str, content: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = redact_pdu(_event(event_type, content), V[version])["content"]
    return result


# -- top level --------------------------------------------------------------------------------

ESSENTIAL = {
    "type",
    "state_key",
    "sender",
    "room_id",
    "origin_server_ts",
    "depth",
    "prev_events",
    "auth_events",
    "hashes",
    "signatures",
    "content",
}


@pytest.mark.parametrize("version", [str(n) for n in range(1, 11)])
def test_v1_to_v10_keep_origin_membership_and_prev_state(version: str) -> None:
    redacted = redact_pdu(_event("m.room.message", {"body": "x"}, event_id="$e:example.org"), V[version])
    assert set(redacted) == ESSENTIAL | {"event_id", "origin", "membership", "prev_state"}


@pytest.mark.parametrize("version", ["11", "12"])
def test_v11_plus_no_longer_keep_origin_membership_and_prev_state(version: str) -> None:
    redacted = redact_pdu(_event("m.room.message", {"body": "x"}, event_id="$e:example.org"), V[version])
    assert set(redacted) == ESSENTIAL | {"event_id"}


@pytest.mark.parametrize("version", ALL)
def test_unsigned_and_unknown_top_level_keys_never_survive(version: str) -> None:
    redacted = redact_pdu(_event("m.room.message", {"body": "x"}), V[version])
    assert "unsigned" not in redacted
    assert "custom_top_level" not in redacted
    assert redacted["content"] == {}


@pytest.mark.parametrize("version", ALL)
def test_top_level_redacts_never_survives(version: str) -> None:
    redacted = redact_pdu(_event("m.room.redaction", {}, redacts="$target"), V[version])
    assert "redacts" not in redacted


@pytest.mark.parametrize("content", [None, "text", [1], 5])
def test_a_missing_or_non_object_content_becomes_empty(content: Any) -> None:
    event = _event("m.room.member", {})
    if content is None:
        del event["content"]
    else:
        event["content"] = content
    assert redact_pdu(event, V["10"])["content"] == {}


def test_redaction_does_not_modify_its_input() -> None:
    event = _event("m.room.power_levels", {"users": {"@a:b": 100}, "notifications": {"room": 50}})
    original = copy.deepcopy(event)
    redact_pdu(event, V["11"])
    assert event == original


# -- content, per event type and version ------------------------------------------------------

MEMBER_CONTENT = {
    "membership": "join",
    "displayname": "Alice",
    "avatar_url": "mxc://x/y",
    "join_authorised_via_users_server": "@mod:example.org",
    "third_party_invite": {"display_name": "alice@example.org", "signed": {"mxid": "@a:b", "token": "t"}},
    "reason": "hi",
}


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1", {"membership": "join"}),
        ("6", {"membership": "join"}),
        ("8", {"membership": "join"}),
        ("9", {"membership": "join", "join_authorised_via_users_server": "@mod:example.org"}),
        ("10", {"membership": "join", "join_authorised_via_users_server": "@mod:example.org"}),
        (
            "11",
            {
                "membership": "join",
                "join_authorised_via_users_server": "@mod:example.org",
                "third_party_invite": {"signed": {"mxid": "@a:b", "token": "t"}},
            },
        ),
        (
            "12",
            {
                "membership": "join",
                "join_authorised_via_users_server": "@mod:example.org",
                "third_party_invite": {"signed": {"mxid": "@a:b", "token": "t"}},
            },
        ),
    ],
)
def test_member_content_per_version(version: str, expected: dict[str, Any]) -> None:
    assert _redacted_content(version, "m.room.member", MEMBER_CONTENT) == expected


def test_v11_keeps_a_third_party_invite_without_signed_as_an_empty_object() -> None:
    content = {"membership": "invite", "third_party_invite": {"display_name": "x"}}
    assert _redacted_content("11", "m.room.member", content) == {
        "membership": "invite",
        "third_party_invite": {},
    }


def test_v11_drops_a_third_party_invite_that_is_not_an_object() -> None:
    content = {"membership": "invite", "third_party_invite": "junk"}
    assert _redacted_content("11", "m.room.member", content) == {"membership": "invite"}


CREATE_CONTENT = {
    "creator": "@alice:example.org",
    "room_version": "10",
    "m.federate": False,
    "predecessor": {"room_id": "!old:example.org"},
    "type": "m.space",
    "additional_creators": ["@bob:example.org"],
}


@pytest.mark.parametrize("version", [str(n) for n in range(1, 11)])
def test_v1_to_v10_create_keeps_only_creator(version: str) -> None:
    assert _redacted_content(version, "m.room.create", CREATE_CONTENT) == {"creator": "@alice:example.org"}


@pytest.mark.parametrize("version", ["11", "12"])
def test_v11_plus_create_keeps_all_content(version: str) -> None:
    assert _redacted_content(version, "m.room.create", CREATE_CONTENT) == CREATE_CONTENT


JOIN_RULES_CONTENT = {
    "join_rule": "restricted",
    "allow": [{"type": "m.room_membership", "room_id": "!space:example.org"}],
    "other": 1,
}


@pytest.mark.parametrize("version", ["1", "6", "7"])
def test_join_rules_keep_only_join_rule_before_v8(version: str) -> None:
    assert _redacted_content(version, "m.room.join_rules", JOIN_RULES_CONTENT) == {"join_rule": "restricted"}


@pytest.mark.parametrize("version", ["8", "9", "10", "11", "12"])
def test_join_rules_keep_allow_from_v8(version: str) -> None:
    assert _redacted_content(version, "m.room.join_rules", JOIN_RULES_CONTENT) == {
        "join_rule": "restricted",
        "allow": JOIN_RULES_CONTENT["allow"],
    }


POWER_LEVELS_CONTENT = {
    "ban": 50,
    "events": {"m.room.name": 100},
    "events_default": 0,
    "invite": 0,
    "kick": 50,
    "notifications": {"room": 50},
    "redact": 50,
    "state_default": 50,
    "users": {"@alice:example.org": 100},
    "users_default": 0,
}
PL_KEPT_V1 = {k: v for k, v in POWER_LEVELS_CONTENT.items() if k not in ("invite", "notifications")}


@pytest.mark.parametrize("version", [str(n) for n in range(1, 11)])
def test_power_levels_drop_invite_and_notifications_before_v11(version: str) -> None:
    assert _redacted_content(version, "m.room.power_levels", POWER_LEVELS_CONTENT) == PL_KEPT_V1


@pytest.mark.parametrize("version", ["11", "12"])
def test_power_levels_keep_invite_from_v11(version: str) -> None:
    assert _redacted_content(version, "m.room.power_levels", POWER_LEVELS_CONTENT) == {
        **PL_KEPT_V1,
        "invite": 0,
    }


@pytest.mark.parametrize("version", ["1", "2", "3", "4", "5"])
def test_aliases_keep_aliases_in_v1_to_v5(version: str) -> None:
    content = {"aliases": ["#a:example.org"], "x": 1}
    assert _redacted_content(version, "m.room.aliases", content) == {"aliases": ["#a:example.org"]}


@pytest.mark.parametrize("version", ["6", "9", "11", "12"])
def test_aliases_lose_all_meaning_from_v6(version: str) -> None:
    assert _redacted_content(version, "m.room.aliases", {"aliases": ["#a:example.org"]}) == {}


@pytest.mark.parametrize("version", ALL)
def test_history_visibility_is_kept_in_every_version(version: str) -> None:
    content = {"history_visibility": "shared", "x": 1}
    assert _redacted_content(version, "m.room.history_visibility", content) == {
        "history_visibility": "shared"
    }


@pytest.mark.parametrize(
    ("version", "expected"), [("10", {}), ("11", {"redacts": "$t"}), ("12", {"redacts": "$t"})]
)
def test_redaction_events_keep_content_redacts_from_v11(version: str, expected: dict[str, Any]) -> None:
    assert _redacted_content(version, "m.room.redaction", {"redacts": "$t", "reason": "spam"}) == expected


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize(
    "event_type", ["m.room.message", "m.room.topic", "m.room.name", "m.room.encrypted", "m.room.tombstone"]
)
def test_other_event_types_lose_all_content(version: str, event_type: str) -> None:
    assert _redacted_content(version, event_type, {"body": "x", "topic": "t", "name": "n"}) == {}


def test_v12_redaction_is_unchanged_from_v11() -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("m.room.member", MEMBER_CONTENT),
        ("m.room.create", CREATE_CONTENT),
        ("m.room.join_rules", JOIN_RULES_CONTENT),
        ("m.room.power_levels", POWER_LEVELS_CONTENT),
        ("m.room.redaction", {"redacts": "$t"}),
        ("m.room.message", {"body": "x"}),
    ]
    for event_type, content in cases:
        event = _event(event_type, content)
        assert redact_pdu(event, V["12"]) == redact_pdu(event, V["11"])


def test_the_spec_redactable_event_vector_redacts_to_its_essentials() -> None:
    # Appendices, "Event Signing": the event with redactable content.
    event = {
        "content": {"body": "Here is the message content"},
        "event_id": "$0:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "type": "m.room.message",
        "room_id": "!r:domain",
        "sender": "@u:domain",
        "signatures": {},
        "unsigned": {"age_ts": 1000000},
    }
    assert redact_pdu(event, V["1"]) == {
        "content": {},
        "event_id": "$0:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "type": "m.room.message",
        "room_id": "!r:domain",
        "sender": "@u:domain",
        "signatures": {},
    }


# -- properties ----------------------------------------------------------------------------------

event_types = st.sampled_from(
    [
        "m.room.member",
        "m.room.create",
        "m.room.join_rules",
        "m.room.power_levels",
        "m.room.aliases",
        "m.room.history_visibility",
        "m.room.redaction",
        "m.room.message",
        "x",
    ]
)
small_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=10,
)
content_keys = st.sampled_from(
    [
        "membership",
        "join_authorised_via_users_server",
        "third_party_invite",
        "creator",
        "join_rule",
        "allow",
        "ban",
        "invite",
        "users",
        "aliases",
        "history_visibility",
        "redacts",
        "body",
        "signed",
    ]
)


@given(
    st.sampled_from(ALL),
    event_types,
    st.dictionaries(content_keys, small_json, max_size=6),
    st.dictionaries(
        st.sampled_from(["origin", "membership", "prev_state", "unsigned", "event_id", "x"]), small_json
    ),
)
def test_redaction_is_idempotent_and_only_ever_removes(
    version: str, event_type: str, content: dict[str, Any], top: dict[str, Any]
) -> None:
    event = {**top, "type": event_type, "content": content}
    once = redact_pdu(event, V[version])
    assert redact_pdu(once, V[version]) == once
    assert "unsigned" not in once
    assert set(once) <= set(event) | {"content"}
    for key, value in once["content"].items():
        if key == "third_party_invite":
            continue  # reduced to its "signed" part in v11+
        assert content[key] == value

"""Request bodies become typed values in ``tribune.inputs``; malformed ones are the client's 4xx.

The API tests hold the answers clients see; these hold what the actions are handed.
"""

from __future__ import annotations

from typing import Any

import pytest

from dagcore.actions.pushers import SetPusherRequest
from dagcore.http.errors import MatrixError
from tribune import inputs

GATEWAY = "https://push.example.org/_matrix/push/v1/notify"


def _error(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
    with pytest.raises(MatrixError) as exc:
        call(*args, **kwargs)
    return exc.value.status, exc.value.errcode, exc.value.error


def test_a_create_room_body_becomes_a_request_the_server_fields_taken_out() -> None:
    request = inputs.parse_create_room(
        {
            "preset": "trusted_private_chat",
            "room_version": "12",
            "invite": ["@bob:localhost", "@bob:localhost"],
            "creation_content": {"creator": "@mallory:localhost", "room_version": "1", "m.federate": False},
            "room_alias_name": "lounge",
        }
    )
    assert request.room_version.identifier == "12" and request.visibility == "private"
    assert request.invite == ("@bob:localhost",)
    assert request.creation_content == {"m.federate": False}
    assert request.room_alias is not None and request.room_alias.startswith("#lounge:")
    assert _error(inputs.parse_create_room, {"room_version": "999"})[:2] == (
        400,
        "M_UNSUPPORTED_ROOM_VERSION",
    )
    assert _error(inputs.parse_create_room, {"invite": ["bob"]}) == (
        400,
        "M_INVALID_PARAM",
        "invite must be a list of user IDs",
    )


def test_a_pusher_of_kind_null_is_a_deletion_and_other_kinds_need_a_gateway() -> None:
    assert inputs.parse_set_pusher({"pushkey": "k", "app_id": "a", "kind": None}) == SetPusherRequest(
        app_id="a", pushkey="k", settings=None
    )
    body = {
        "pushkey": "k",
        "app_id": "a",
        "kind": "http",
        "app_display_name": "App",
        "device_display_name": "Phone",
        "lang": "en",
        "data": {"url": GATEWAY},
    }
    pusher = inputs.parse_set_pusher(body).settings
    assert pusher is not None and pusher.data == {"url": GATEWAY} and not pusher.append
    wrong_path = {**body, "data": {"url": "https://push.example.org/notify"}}
    assert _error(inputs.parse_set_pusher, wrong_path)[:2] == (400, "M_INVALID_PARAM")


def test_push_rule_bodies() -> None:
    rule = inputs.parse_push_rule(
        kind="content",
        rule_id="cats",
        body={"pattern": "cat*", "actions": ["notify"]},
        before=None,
        after="x",
    )
    assert (rule.pattern, rule.actions, rule.after) == ("cat*", ["notify"], "x")
    assert _error(
        inputs.parse_push_rule, kind="override", rule_id=".m.rule.x", body={}, before=None, after=None
    )[:2] == (400, "M_INVALID_PARAM")
    assert inputs.parse_rule_enabled({"enabled": False}) is False
    assert _error(inputs.parse_rule_enabled, {"enabled": "no"})[:2] == (400, "M_BAD_JSON")
    assert _error(inputs.parse_rule_actions, {})[:2] == (400, "M_MISSING_PARAM")


def test_room_keys_and_backup_versions() -> None:
    session = {"first_message_index": 0, "forwarded_count": 1, "is_verified": True, "session_data": {}}
    (key,) = inputs.parse_room_keys_upload({"rooms": {"!r:x": {"sessions": {"s1": session}}}})
    assert (key.room_id, key.session_id, key.forwarded_count) == ("!r:x", "s1", 1)
    assert _error(inputs.parse_room_keys_upload, {"rooms": {"r": {"sessions": {}}}})[2] == "Invalid room ID"
    params = inputs.parse_backup_update(
        {"algorithm": "org.example", "auth_data": {}, "version": "3"}, version="3"
    )
    assert (params.algorithm, params.auth_data) == ("org.example", {})
    other_version = {"algorithm": "a", "auth_data": {}, "version": "2"}
    message = _error(inputs.parse_backup_update, other_version, version="3")[2]
    assert message == "version does not match the version in the path"


def test_the_filter_parameter_of_messages() -> None:
    parsed = inputs.parse_messages_filter(
        '{"types": ["m.room.message"], "lazy_load_members": true, "limit": 5}'
    )
    assert parsed.sql is not None and parsed.sql.types == ("m.room.message",)
    assert parsed.lazy_load_members and parsed.limit == 5
    assert inputs.parse_messages_filter(None) == inputs.MessagesFilter()
    assert _error(inputs.parse_messages_filter, "[1]")[2] == "filter must be a JSON object"


def test_search_criteria_and_batch() -> None:
    body = {"search_categories": {"room_events": {"search_term": "Hello hello World", "order_by": "recent"}}}
    criteria = inputs.parse_search_criteria(body)
    assert criteria.words == ("hello", "world") and criteria.order_by == "recent"
    assert inputs.parse_search_batch("42") == 42
    assert _error(inputs.parse_search_batch, "x")[2] == "Invalid next_batch token"

"""Property-based fuzzing of the client API against a live server (hypothesis).

Whatever the JSON body, path parameters or query string: the answer is below 500, and a
4xx carries a JSON ``errcode``. Event content that is accepted comes back unchanged.
Example counts stay modest (about 100 per group) so the suite stays fast.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.client import MatrixClient, Response, q

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    # Strings that broke homeservers before: NUL (PostgreSQL text cannot hold it), separators, BOM.
    | st.sampled_from(["\x00", "a\x00b", "\u2028", "\ufeff", "\U0001f600"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
#: Keys a real body of these endpoints would hold, so the fuzzer reaches past "missing field".
likely_keys = st.sampled_from([
    "user_id", "room_id", "reason", "body", "msgtype", "membership", "typing", "timeout", "presence",
    "displayname", "avatar_url", "display_name", "devices", "messages", "device_keys", "one_time_keys",
    "fallback_keys", "auth", "type", "identifier", "password", "username", "filter", "limit", "since",
    "search_term", "visibility", "preset", "initial_state", "invite", "name", "topic", "creation_content",
    "power_level_content_override", "room_version", "new_version", "m.fully_read", "m.read", "thread_id",
    "actions", "conditions", "pattern", "enabled", "algorithm", "auth_data", "master_key", "refresh_token",
    "room", "timeline", "types", "not_types", "senders", "event_fields", "event_format", "account_data",
    "kind", "app_id", "pushkey", "app_display_name", "device_display_name", "lang", "data", "append",
])  # fmt: skip
bodies = st.one_of(
    json_values,
    st.dictionaries(likely_keys, json_values, max_size=6),
    st.dictionaries(likely_keys, st.dictionaries(likely_keys, json_values, max_size=4), max_size=4),
)
segments = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "..",
            ".",
            "%",
            "%00",
            "%2F",
            "$",
            "!",
            "@",
            "#",
            "@a:localhost",
            "!a:localhost",
            "#a:localhost",
            "$a",
            "a" * 300,
            "\u202e",
            "\ud7ff",
            "💥",
            "mxc://x/y",
        ]
    ),
)


def _checked(r: Response) -> None:
    # 502/504: another server (a fuzzed server name: media, profiles, directories) could not be
    # reached or was refused by our outbound address policy, a Matrix error naming it, as
    # Synapse answers; never a 500 (a crash).
    gateway = r.status in (502, 504) and isinstance(r.json, dict) and r.json.get("errcode") is not None
    assert r.status < 500 or gateway, f"{r.status}: {r.raw.text[:300]}"
    if r.status == 401 and isinstance(r.json, dict) and "flows" in r.json:
        return  # a user-interactive auth challenge (spec: errcode only after a failed stage)
    if r.status >= 400:
        assert isinstance(r.json, dict) and isinstance(r.json.get("errcode"), str), r.raw.text[:300]


class World:
    def __init__(self, base_url: str) -> None:
        self.alice = MatrixClient(base_url).register()
        self.bob = MatrixClient(base_url).register()
        self.room = self.alice.create_room(preset="public_chat")
        self.bob.join(self.room)
        self.event = self.alice.send(self.room, "root")

    def fill(self, template: str, value: str | None = None) -> str:
        v = quote(value, safe="") if value is not None else None
        return template.format(
            room=v or q(self.room), event=v or q(self.event), me=q(self.alice.user_id or ""),
            user=v or q(self.bob.user_id or ""), txn=v or secrets.token_hex(6), device=v or self.alice.device_id,
            type=v or "org.example.type", key=v or "",
        )  # fmt: skip


@pytest.fixture(scope="module")
def world(dagma_server) -> World:
    return World(dagma_server.base_url)


# Destructive endpoints (logout, deactivate, password, device deletion) are left out: the fuzzer
# must keep its session. They get the same parser as every other endpoint.
JSON_ENDPOINTS = [
    ("PUT", "/rooms/{room}/send/{type}/{txn}"),
    ("PUT", "/rooms/{room}/state/{type}/{key}"),
    ("PUT", "/rooms/{room}/redact/{event}/{txn}"),
    ("POST", "/createRoom"),
    ("POST", "/register"),
    ("POST", "/login"),
    ("POST", "/user/{me}/filter"),
    ("PUT", "/user/{me}/account_data/{type}"),
    ("PUT", "/user/{me}/rooms/{room}/account_data/{type}"),
    ("PUT", "/user/{me}/rooms/{room}/tags/u.x"),
    ("POST", "/keys/upload"),
    ("POST", "/keys/query"),
    ("POST", "/keys/claim"),
    ("POST", "/keys/device_signing/upload"),
    ("POST", "/keys/signatures/upload"),
    ("POST", "/room_keys/version"),
    ("PUT", "/profile/{me}/displayname"),
    ("PUT", "/devices/{device}"),
    ("POST", "/publicRooms"),
    ("POST", "/user_directory/search"),
    ("POST", "/rooms/{room}/invite"),
    ("POST", "/rooms/{room}/kick"),
    ("POST", "/rooms/{room}/ban"),
    ("POST", "/rooms/{room}/receipt/m.read/{event}"),
    ("POST", "/rooms/{room}/read_markers"),
    ("PUT", "/rooms/{room}/typing/{me}"),
    ("PUT", "/presence/{me}/status"),
    ("PUT", "/sendToDevice/{type}/{txn}"),
    ("PUT", "/pushrules/global/override/org.example.fuzz"),
    ("PUT", "/pushrules/global/override/org.example.fuzz/actions"),
    ("PUT", "/pushrules/global/override/org.example.fuzz/enabled"),
    ("POST", "/rooms/{room}/report/{event}"),
    ("PUT", "/directory/list/room/{room}"),
    ("PUT", "/directory/room/%23fuzz:localhost"),
    ("POST", "/join/{room}"),
    ("POST", "/rooms/{room}/upgrade"),
    ("POST", "/refresh"),
    ("POST", "/pushers/set"),
]


@FUZZ
@given(endpoint=st.sampled_from(JSON_ENDPOINTS), body=bodies)
def test_random_json_bodies_never_cause_a_server_error(
    world: World, endpoint: tuple[str, str], body: Any
) -> None:
    method, template = endpoint
    _checked(world.alice.request(method, world.fill(template), body, expect=None))


@FUZZ
@given(endpoint=st.sampled_from(JSON_ENDPOINTS), raw=st.binary(max_size=200))
def test_random_bytes_never_cause_a_server_error(world: World, endpoint: tuple[str, str], raw: bytes) -> None:
    method, template = endpoint
    r = world.alice.request(method, world.fill(template), content=raw,
                            headers={"Content-Type": "application/json"}, expect=None)  # fmt: skip
    _checked(r)


PATH_ENDPOINTS = [
    ("GET", "/rooms/{room}/state"),
    ("GET", "/rooms/{room}/state/{type}/{key}"),
    ("GET", "/rooms/{room}/messages?dir=b"),
    ("GET", "/rooms/{room}/members"),
    ("GET", "/rooms/{room}/joined_members"),
    ("GET", "/rooms/{room}/event/{event}"),
    ("GET", "/rooms/{room}/context/{event}"),
    ("GET", "/_matrix/client/v1/rooms/{room}/relations/{event}"),
    ("GET", "/_matrix/client/v1/rooms/{room}/relations/{event}/{type}/{type}"),
    ("GET", "/_matrix/client/v1/rooms/{room}/threads"),
    ("GET", "/rooms/{room}/aliases"),
    ("GET", "/profile/{user}"),
    ("GET", "/profile/{user}/displayname"),
    ("GET", "/presence/{user}/status"),
    ("GET", "/directory/room/{room}"),
    ("GET", "/directory/list/room/{room}"),
    ("GET", "/user/{me}/account_data/{type}"),
    ("GET", "/user/{me}/filter/{key}"),
    ("GET", "/devices/{device}"),
    ("GET", "/pushrules/global/{type}/{key}"),
    ("GET", "/_matrix/client/v1/media/download/{type}/{key}"),
    ("GET", "/_matrix/client/v1/media/thumbnail/{type}/{key}?width=32&height=32"),
    ("PUT", "/rooms/{room}/send/{type}/{txn}"),
    ("PUT", "/rooms/{room}/state/{type}/{key}"),
    ("PUT", "/rooms/{room}/redact/{event}/{txn}"),
    ("POST", "/join/{room}"),
    ("POST", "/rooms/{room}/leave"),
    ("POST", "/rooms/{room}/forget"),
    ("POST", "/rooms/{room}/receipt/{type}/{event}"),
    ("PUT", "/rooms/{room}/typing/{user}"),
    ("DELETE", "/directory/room/{room}"),
    ("PUT", "/user/{user}/account_data/{type}"),
]


@FUZZ
@given(endpoint=st.sampled_from(PATH_ENDPOINTS), value=segments)
def test_random_path_parameters_never_cause_a_server_error(
    world: World, endpoint: tuple[str, str], value: str
) -> None:
    method, template = endpoint
    try:
        path = world.fill(template, value)
    except UnicodeEncodeError:
        path = world.fill(template, value.encode("utf-8", "replace").decode())
    body = {"msgtype": "m.text", "body": "x"} if method in ("PUT", "POST") else None
    _checked(world.alice.request(method, path, body, expect=None))


QUERY_ENDPOINTS = [
    "/rooms/{room}/messages",
    "/rooms/{room}/context/{event}",
    "/_matrix/client/v1/rooms/{room}/relations/{event}",
    "/_matrix/client/v1/rooms/{room}/threads",
    "/_matrix/client/v1/rooms/{room}/timestamp_to_event",
    "/rooms/{room}/members",
    "/publicRooms",
    "/notifications",
    "/keys/changes",
    "/sync",
]
query_values = st.one_of(
    st.text(max_size=30),
    st.integers().map(str),
    st.sampled_from(["b", "f", "t1_1", "s1_1_1_1_1_1_1", "true", "false", "all", "participated"]),
    json_values.map(json.dumps),
)
queries = st.dictionaries(
    st.sampled_from(["limit", "from", "to", "dir", "filter", "since", "ts", "at", "membership",
                     "not_membership", "include", "recurse", "timeout", "full_state", "set_presence", "only"]),
    query_values,
    max_size=5,
)  # fmt: skip


@FUZZ
@given(template=st.sampled_from(QUERY_ENDPOINTS), params=queries)
def test_random_query_strings_never_cause_a_server_error(
    world: World, template: str, params: dict[str, str]
) -> None:
    if template == "/sync":
        params = {**params, "timeout": "0"}  # never a long-poll
    safe = {k: v.encode("utf-8", "replace").decode() for k, v in params.items()}
    _checked(world.alice.get(world.fill(template), params=safe, expect=None))


@FUZZ
@given(
    content=st.dictionaries(st.text(max_size=12), json_values, max_size=6),
    event_type=st.text(min_size=1, max_size=30),
)
def test_accepted_event_content_comes_back_unchanged(
    world: World, content: dict[str, Any], event_type: str
) -> None:
    try:
        path = f"/rooms/{q(world.room)}/send/{q(event_type)}/{secrets.token_hex(6)}"
    except UnicodeEncodeError:
        return
    r = world.alice.put(path, content, expect=None)
    _checked(r)
    if r.status != 200:
        return
    got = world.bob.get(f"/rooms/{q(world.room)}/event/{q(r.json['event_id'])}", expect=None)
    _checked(got)
    assert got.status == 200
    assert got.json["content"] == content
    assert got.json["type"] == event_type
    assert got.json["sender"] == world.alice.user_id

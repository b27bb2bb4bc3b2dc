"""Class 4 — malformed JSON and numbers: refused with 400/413 and a Matrix error, never a 500.

Every JSON endpoint goes through ``tribune.http.parse_body`` and
``dagcore.protocol.canonical_json.parse_json_body``; these tests send the same
hostile bodies to a wide sample of them, each time with a valid control.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.security.kit import assert_error, assert_unharmed, marker, room_dump, shared_room, txn
from tests.support.client import MatrixClient, q

DEEP = b'{"a":' * 10_000 + b"1" + b"}" * 10_000

#: (name, raw body, acceptable (status, errcodes))
HOSTILE_BODIES: list[tuple[str, bytes, int, tuple[str, ...]]] = [
    ("lone high surrogate", b'{"body": "\\ud800", "msgtype": "m.text"}', 400, ("M_BAD_JSON",)),
    ("lone low surrogate in a key", b'{"\\udc00": 1}', 400, ("M_BAD_JSON",)),
    ("NaN", b'{"a": NaN}', 400, ("M_BAD_JSON", "M_NOT_JSON")),
    ("Infinity", b'{"a": Infinity}', 400, ("M_BAD_JSON", "M_NOT_JSON")),
    ("-Infinity", b'{"a": -Infinity}', 400, ("M_BAD_JSON", "M_NOT_JSON")),
    ("overflowing float", b'{"a": 1e400}', 400, ("M_BAD_JSON",)),
    ("a 5,000-digit integer", b'{"a": ' + b"9" * 5000 + b"}", 400, ("M_BAD_JSON",)),
    ("10,000-deep nesting", DEEP, 400, ("M_BAD_JSON",)),
    ("10,000-deep arrays", b"[" * 10_000 + b"]" * 10_000, 400, ("M_BAD_JSON",)),
    ("invalid UTF-8", b'{"a": "\xff\xfe"}', 400, ("M_NOT_JSON",)),
    ("overlong UTF-8 encoding of /", b'{"a": "\xc0\xaf"}', 400, ("M_NOT_JSON",)),
    ("truncated JSON", b'{"a": ', 400, ("M_NOT_JSON",)),
    ("form-encoded", b"a=1&b=2", 400, ("M_NOT_JSON",)),
    ("an array", b"[1, 2, 3]", 400, ("M_BAD_JSON", "M_NOT_JSON")),
    ("a string", b'"hello"', 400, ("M_BAD_JSON", "M_NOT_JSON")),
    ("null", b"null", 400, ("M_BAD_JSON", "M_NOT_JSON")),
    ("a number", b"42", 400, ("M_BAD_JSON", "M_NOT_JSON")),
    (
        "multipart",
        b'--xx\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--xx--\r\n',
        400,
        ("M_NOT_JSON",),
    ),
    ("a UTF-8 byte order mark", b'\xef\xbb\xbf{"a": 1}', 400, ("M_NOT_JSON",)),
    # JSON allows U+0000 but PostgreSQL text cannot hold it: refused whole, before any write
    # (it used to reach columns such as device and display names and fail there with a 500).
    (
        "NUL in a string",
        b'{"msgtype": "m.text", "body": "a\\u0000b", "display_name": "\\u0000"}',
        400,
        ("M_BAD_JSON",),
    ),
    ("NUL in a key", b'{"a\\u0000": 1}', 400, ("M_BAD_JSON",)),
]

TOO_LARGE = b'{"a": "' + b"x" * (10 * 1024 * 1024) + b'"}'


class World:
    """A room and users that every endpoint template below can name."""

    def __init__(self, alice: MatrixClient, bob: MatrixClient) -> None:
        self.alice, self.bob = alice, bob
        self.room = shared_room(alice, bob)
        self.event = alice.send(self.room, "target")

    def fill(self, template: str) -> str:
        return template.format(
            room=q(self.room),
            me=q(self.alice.user_id or ""),
            event=q(self.event),
            txn=txn(),
            device=self.alice.device_id,
        )


#: (method, path template, a valid body for the control, expected control status)
ENDPOINTS: list[tuple[str, str, Any, int]] = [
    ("PUT", "/rooms/{room}/send/m.room.message/{txn}", {"msgtype": "m.text", "body": "ok"}, 200),
    ("PUT", "/rooms/{room}/state/m.room.topic/", {"topic": "ok"}, 200),
    ("PUT", "/rooms/{room}/redact/{event}/{txn}", {"reason": "ok"}, 200),
    ("POST", "/createRoom", {"preset": "private_chat"}, 200),
    ("POST", "/register", {"auth": {"type": "m.login.dummy"}, "password": "correct horse battery"}, 200),
    (
        "POST",
        "/login",
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "nobody"}, "password": "x"},
        403,
    ),
    ("POST", "/user/{me}/filter", {"room": {"timeline": {"limit": 5}}}, 200),
    ("PUT", "/user/{me}/account_data/org.example.test", {"a": 1}, 200),
    ("PUT", "/user/{me}/rooms/{room}/account_data/org.example.test", {"a": 1}, 200),
    ("PUT", "/user/{me}/rooms/{room}/tags/u.work", {"order": 0.5}, 200),
    ("POST", "/keys/upload", {}, 200),
    ("POST", "/keys/query", {"device_keys": {}}, 200),
    ("POST", "/keys/claim", {"one_time_keys": {}}, 200),
    ("POST", "/keys/signatures/upload", {}, 200),
    (
        "POST",
        "/room_keys/version",
        {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "abc"}},
        200,
    ),
    ("PUT", "/profile/{me}/displayname", {"displayname": "ok"}, 200),
    ("PUT", "/devices/{device}", {"display_name": "ok"}, 200),
    ("POST", "/publicRooms", {"limit": 5}, 200),
    ("POST", "/user_directory/search", {"search_term": "x"}, 200),
    ("POST", "/rooms/{room}/invite", {"user_id": "@nobody:localhost"}, 404),
    ("POST", "/rooms/{room}/receipt/m.read/{event}", {}, 200),
    ("POST", "/rooms/{room}/read_markers", {"m.fully_read": "{event_raw}"}, 200),
    ("PUT", "/rooms/{room}/typing/{me}", {"typing": False}, 200),
    ("PUT", "/presence/{me}/status", {"presence": "online"}, 200),
    ("PUT", "/sendToDevice/m.test/{txn}", {"messages": {}}, 200),
    ("PUT", "/pushrules/global/override/org.example.rule", {"actions": [], "conditions": []}, 200),
    ("POST", "/rooms/{room}/report/{event}", {"reason": "ok"}, 200),
    ("PUT", "/directory/list/room/{room}", {"visibility": "private"}, 200),
    ("POST", "/join/{room}", {}, 200),
    ("POST", "/rooms/{room}/upgrade", {"new_version": "nope"}, 400),
    ("POST", "/account/password", {"new_password": "another long password"}, 401),
    ("POST", "/delete_devices", {"devices": []}, 401),
]


@pytest.fixture(scope="module")
def world(dagma_server) -> World:
    alice = MatrixClient(dagma_server.base_url).register()
    bob = MatrixClient(dagma_server.base_url).register()
    return World(alice, bob)


def _raw(client: MatrixClient, method: str, path: str, body: bytes, content_type: str = "application/json"):
    return client.request(method, path, content=body, headers={"Content-Type": content_type}, expect=None)


@pytest.mark.parametrize(
    ("method", "template", "valid", "ok_status"), ENDPOINTS, ids=[e[1] for e in ENDPOINTS]
)
def test_hostile_bodies_are_refused_cleanly_on_every_json_endpoint(
    world: World, method: str, template: str, valid: Any, ok_status: int
) -> None:
    path = world.fill(template)
    for name, body, status, errcodes in HOSTILE_BODIES:
        r = _raw(world.alice, method, path, body)
        assert r.status == status, f"{name}: {r.status} {r.raw.text[:200]}"
        assert_error(r, status, *errcodes)
    r = _raw(world.alice, method, path, TOO_LARGE)
    assert_error(r, 413, "M_TOO_LARGE")
    # Control: the same endpoint with a valid body (a text/plain content type is tolerated, as Synapse does).
    valid_bytes = json.dumps(valid).replace("{event_raw}", world.event).encode()
    r = _raw(world.alice, method, world.fill(template), valid_bytes, "text/plain")
    assert r.status == ok_status, r
    assert_unharmed(world.alice, world.bob, world.room)


EVENT_VALUES = [
    ("a float", {"msgtype": "m.text", "body": "x", "n": 1.5}),
    ("2**53", {"msgtype": "m.text", "body": "x", "n": 2**53}),
    ("-(2**53)", {"msgtype": "m.text", "body": "x", "n": -(2**53)}),
    ("a nested big int", {"msgtype": "m.text", "body": "x", "deep": [{"n": 2**63}]}),
    ("a float exponent", {"msgtype": "m.text", "body": "x", "n": 1e300}),
]


@pytest.mark.parametrize(("name", "content"), EVENT_VALUES, ids=[v[0] for v in EVENT_VALUES])
def test_event_content_outside_canonical_json_is_refused_in_v6_plus_rooms(
    make_client, name: str, content: dict[str, Any]
) -> None:
    alice, bob = make_client(), make_client()
    room = shared_room(alice, bob, room_version="11")
    mark = marker()
    content = {**content, "body": mark}
    attacks = [
        ("PUT", f"/rooms/{q(room)}/send/m.room.message/{txn()}", content),
        ("PUT", f"/rooms/{q(room)}/state/org.example.state/", content),
        ("PUT", f"/rooms/{q(room)}/state/m.room.power_levels/",
         {**alice.get(f"/rooms/{q(room)}/state/m.room.power_levels/").json, "x": content}),
        ("POST", "/createRoom", {"initial_state": [{"type": "org.example.s", "state_key": "", "content": content}]}),
        ("POST", "/createRoom", {"creation_content": content}),
        ("POST", "/createRoom", {"power_level_content_override": {"events": {"x": content.get("n", 1.5)}}}),
    ]  # fmt: skip
    for method, path, body in attacks:
        raw = json.dumps(body).encode()
        r = _raw(alice, method, path, raw)
        assert_error(r, 400, "M_BAD_JSON")
    # Control: integers at the limits are fine.
    ok = {"msgtype": "m.text", "body": "limits", "max": 2**53 - 1, "min": -(2**53 - 1)}
    alice.put(
        f"/rooms/{q(room)}/send/m.room.message/{txn()}", ok, spec="/rooms/{roomId}/send/{eventType}/{txnId}"
    )
    assert_unharmed(alice, bob, room, absent=mark)


def test_floats_are_accepted_in_pre_v6_rooms_but_never_nan(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = shared_room(alice, bob, room_version="5")
    alice.put(f"/rooms/{q(room)}/send/m.room.message/{txn()}", {"msgtype": "m.text", "body": "f", "n": 1.5})
    r = _raw(alice, "PUT", f"/rooms/{q(room)}/send/m.room.message/{txn()}", b'{"body": "x", "n": NaN}')
    assert_error(r, 400, "M_BAD_JSON")
    assert "1.5" in room_dump(bob, room)


QUERY_FILTERS = [
    "{" * 5000,
    '{"types": ["\\ud800"]}',
    '{"a":' * 1000 + "1" + "}" * 1000,
    '{"limit": NaN}',
    '{"limit": 1e400}',
    '{"types": "m.room.message"}',
    '{"senders": [1, 2]}',
    '{"limit": -1}',
    "[]",
    "not json",
    "\x00",
]


FILTERED_PATHS = ["messages", "context", "sync"]


def _filtered_path(world: World, kind: str) -> str:
    return {
        "messages": f"/rooms/{q(world.room)}/messages",
        "context": f"/rooms/{q(world.room)}/context/{q(world.event)}",
        "sync": "/sync",
    }[kind]


@pytest.mark.parametrize("kind", FILTERED_PATHS)
@pytest.mark.parametrize("flt", QUERY_FILTERS)
def test_hostile_filter_query_parameters_are_refused(world: World, kind: str, flt: str) -> None:
    path = _filtered_path(world, kind)
    r = world.alice.get(path, params={"filter": _as(kind, flt), "dir": "b", "timeout": 0}, expect=None)
    assert_error(r, 400)
    # Control: a valid filter works.
    good = json.dumps({"types": ["m.room.message"], "limit": 5})
    world.alice.get(path, params={"filter": _as(kind, good), "dir": "b", "timeout": 0})
    assert_unharmed(world.alice, world.bob, world.room)


def _as(kind: str, room_event_filter: str) -> str:
    """/messages and /context take a RoomEventFilter; /sync a Filter, whose room timeline is one."""
    if kind != "sync" or not room_event_filter.startswith(("{", "[")):
        return room_event_filter
    return '{"room": {"timeline": ' + room_event_filter + "}}"


@pytest.mark.parametrize("kind", FILTERED_PATHS)
def test_a_huge_filter_limit_is_clamped_not_an_error(world: World, kind: str) -> None:
    path = _filtered_path(world, kind)
    r = world.alice.get(path, params={"filter": '{"limit": 99999999999999999999999}', "dir": "b", "timeout": 0},
                        expect=None)  # fmt: skip
    assert r.status in (200, 400), r
    if r.status == 400:
        assert_error(r, 400)


@pytest.mark.parametrize(
    "template",
    ["/rooms/{room}/messages?dir=b&from=%00", "/sync?since=%00", "/notifications?from=%00",
     "/publicRooms?since=%00", "/rooms/{room}/members?at=%00", "/_matrix/media/v3/upload?filename=a%00b"],
)  # fmt: skip
def test_nul_in_a_query_parameter_is_refused(world: World, template: str) -> None:
    method = "POST" if "upload" in template else "GET"
    r = world.alice.request(method, world.fill(template), content=b"x", expect=None)
    assert_error(r, 400, "M_INVALID_PARAM")
    control = world.alice.request(method, world.fill(template.replace("%00", "")), content=b"x", expect=None)
    assert control.status < 500 and "NUL" not in control.raw.text, control
    assert_unharmed(world.alice, world.bob, world.room)


def test_an_unknown_endpoint_is_unrecognized_whatever_the_body(world: World) -> None:
    for body in (b"not json", DEEP, b'{"a": 1}'):
        r = _raw(world.alice, "PUT", "/_matrix/client/v3/no/such/endpoint", body)
        assert_error(r, 404, "M_UNRECOGNIZED")
    r = world.alice.request("POST", "/_matrix/client/v3/no/such/endpoint", {"a": 1}, expect=None)
    assert_error(r, 404, "M_UNRECOGNIZED")
    world.alice.get("/account/whoami", spec="/account/whoami")  # control

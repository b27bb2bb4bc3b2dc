"""Class 8 — resource exhaustion: every count, size, depth and token a client controls is bounded,
and garbage is a 400, never a 500 or an unbounded amount of work."""

from __future__ import annotations

import time

import pytest

from dagcore.protocol.push_rules import glob_matches
from tests.security.kit import SEND, assert_error, assert_unharmed, send_text, shared_room, txn
from tests.support.client import MatrixClient, q

BAD_INTS = [
    "-1",
    "abc",
    "1e3",
    "0x10",
    "-99999999999999999999",
    "1.5",
    " 1",
    "1_0",
    "\u0661",  # ARABIC-INDIC DIGIT ONE: int() would take it
    "\x00",
]
BAD_TOKENS = [
    "garbage", "t", "t-1", "t1_", "t-99999999999999999999_0", "t1_99999999999999999999", "s", "s-1",
    "s1_2_3_4_5_6_7_8_9", "s99999999999999999999", "o-1", "th-1", "th99999999999999999999999", "\x00", "%",
    "t1_1\x00", "a" * 5000,
]  # fmt: skip


@pytest.fixture(scope="module")
def world(dagma_server):
    alice = MatrixClient(dagma_server.base_url).register()
    bob = MatrixClient(dagma_server.base_url).register()
    room = shared_room(alice, bob)
    event = send_text(alice, room, "root")
    return alice, bob, room, event


def _paths(room: str, event: str) -> dict[str, str]:
    r, e = q(room), q(event)
    return {
        "messages": f"/rooms/{r}/messages",
        "context": f"/rooms/{r}/context/{e}",
        "relations": f"/_matrix/client/v1/rooms/{r}/relations/{e}",
        "threads": f"/_matrix/client/v1/rooms/{r}/threads",
        "publicRooms": "/publicRooms",
        "notifications": "/notifications",
        "sync": "/sync",
    }


LIMITED = ["messages", "context", "relations", "threads", "publicRooms", "notifications"]


@pytest.mark.parametrize("kind", LIMITED)
@pytest.mark.parametrize("value", BAD_INTS)
def test_garbage_limits_are_refused_with_400(world, kind: str, value: str) -> None:
    alice, _bob, room, event = world
    path = _paths(room, event)[kind]
    r = alice.get(path, params={"limit": value, "dir": "b"}, expect=None)
    assert_error(r, 400, "M_INVALID_PARAM")
    alice.get(path, params={"limit": "3", "dir": "b"})  # control


@pytest.mark.parametrize("kind", LIMITED)
def test_huge_limits_are_clamped(world, kind: str) -> None:
    alice, _bob, room, event = world
    r = alice.get(_paths(room, event)[kind], params={"limit": str(2**53), "dir": "b"}, expect=None)
    assert r.status in (200, 400), r
    if r.status == 200:
        for key in ("chunk", "notifications", "events_before"):
            assert len(r.json.get(key, [])) <= 1000


@pytest.mark.parametrize("kind", ["messages", "relations", "threads", "publicRooms", "notifications", "sync"])
@pytest.mark.parametrize("token", BAD_TOKENS)
def test_garbage_pagination_and_sync_tokens_are_refused_with_400(world, kind: str, token: str) -> None:
    alice, bob, room, event = world
    path = _paths(room, event)[kind]
    name = {"sync": "since", "publicRooms": "since"}.get(kind, "from")
    r = alice.get(path, params={name: token, "timeout": "0", "dir": "b"}, expect=None)
    assert_error(r, 400)
    assert_unharmed(alice, bob, room) if token == BAD_TOKENS[0] else None


def test_garbage_tokens_for_members_and_key_changes_are_refused(world) -> None:
    alice, _bob, room, _event = world
    for token in ("garbage", "s-1", "s99999999999999999999", "\x00"):
        assert_error(alice.get(f"/rooms/{q(room)}/members", params={"at": token}, expect=None), 400)
        r = alice.get("/keys/changes", params={"from": token, "to": token}, expect=None)
        assert_error(r, 400)
    since = alice.sync()["next_batch"]
    alice.get(f"/rooms/{q(room)}/members", params={"at": since}, spec="/rooms/{roomId}/members")
    alice.get("/keys/changes", params={"from": since, "to": since}, spec="/keys/changes")


@pytest.mark.parametrize("value", ["-1", "abc", "1e9", "1.5"])
def test_garbage_sync_timeouts_are_refused(world, value: str) -> None:
    alice, *_ = world
    r = alice.get("/sync", params={"timeout": value}, expect=None)
    assert_error(r, 400, "M_INVALID_PARAM")
    alice.get("/sync", params={"timeout": "0"})


def test_content_nested_up_to_the_depth_limit_is_accepted_and_deeper_is_refused(world) -> None:
    alice, bob, room, _ = world
    deep: dict = {"leaf": 1}
    for _ in range(60):
        deep = {"d": deep}
    alice.put(f"/rooms/{q(room)}/send/org.example.deep/{txn()}", deep, spec=SEND)
    for _ in range(10):
        deep = {"d": deep}
    r = alice.put(f"/rooms/{q(room)}/send/org.example.deep/{txn()}", deep, expect=None)
    assert_error(r, 400, "M_BAD_JSON")
    assert_unharmed(alice, bob, room)


def test_many_key_objects_are_handled_or_refused_quickly(world) -> None:
    alice, bob, room, _ = world
    many = {f"k{i}": i for i in range(4000)}
    alice.put(f"/rooms/{q(room)}/send/org.example.wide/{txn()}", many, spec=SEND)
    huge = {f"key{i}": i for i in range(60_000)}  # ~1 MB: past the PDU limit
    r = alice.put(f"/rooms/{q(room)}/send/org.example.wide/{txn()}", huge, expect=None)
    assert_error(r, 413, "M_TOO_LARGE")
    started = time.monotonic()
    r = alice.put(f"/user/{q(alice.user_id)}/account_data/org.example.wide", {f"k{i}": i for i in range(40_000)},
                  expect=None)  # fmt: skip
    assert r.status in (200, 413), r
    assert time.monotonic() - started < 10
    assert_unharmed(alice, bob, room)


def test_a_deep_but_parseable_filter_is_refused_cleanly(world) -> None:
    alice, *_ = world
    nested: dict = {"types": ["m.room.message"]}
    for _ in range(50):
        nested = {"room": nested}
    r = alice.post(f"/user/{q(alice.user_id)}/filter", nested, expect=None)
    assert r.status in (200, 400), r
    if r.status == 400:
        assert_error(r, 400)
    alice.post(
        f"/user/{q(alice.user_id)}/filter",
        {"room": {"timeline": {"limit": 10}}},
        spec="/user/{userId}/filter",
    )


def test_create_room_bounds_initial_state_and_invites(world, make_client) -> None:
    alice, *_ = world
    many_state = [{"type": f"org.example.s{i}", "state_key": "", "content": {}} for i in range(2000)]
    r = alice.post("/createRoom", {"initial_state": many_state}, expect=None)
    assert_error(r, 400, "M_INVALID_PARAM", "M_LIMIT_EXCEEDED", "M_TOO_LARGE")
    invites = [f"@u{i}:localhost" for i in range(5000)]
    r = alice.post("/createRoom", {"invite": invites}, expect=None)
    assert_error(r, 400, "M_INVALID_PARAM", "M_LIMIT_EXCEEDED", "M_TOO_LARGE")
    big = {"type": "org.example.big", "state_key": "", "content": {"x": "y" * 70_000}}
    r = alice.post("/createRoom", {"initial_state": [big]}, expect=None)
    assert_error(r, 413, "M_TOO_LARGE")
    # Controls: a reasonable room with some state and an invite.
    bob = make_client()
    alice.post("/createRoom", {"initial_state": many_state[:20], "invite": [bob.user_id]}, spec="/createRoom")


@pytest.mark.parametrize(
    "params",
    [
        {"width": "100000", "height": "100000"},
        {"width": "-1", "height": "32"},
        {"width": "abc", "height": "32"},
        {"width": "99999999999999999999", "height": "1"},
        {"width": "0", "height": "0"},
        {"width": "32", "height": "32", "method": "explode"},
        {"width": "32", "height": "32", "animated": "maybe"},
        {},
    ],
)
def test_thumbnail_parameters_are_bounded(world, params: dict) -> None:
    from tests.media import images

    alice, *_ = world
    up = alice.request("POST", "/_matrix/media/v3/upload", content=images.png(64, 64, (1, 2, 3)),
                       headers={"Content-Type": "image/png"}).json  # fmt: skip
    server, media_id = up["content_uri"][len("mxc://") :].split("/")
    path = f"/_matrix/client/v1/media/thumbnail/{server}/{media_id}"
    r = alice.get(path, params=params, expect=None)
    if r.status == 200:
        import io

        from PIL import Image

        image = Image.open(io.BytesIO(r.raw.content))
        assert image.width <= 800 and image.height <= 800
    else:
        assert_error(r, 400)
    assert alice.get(path, params={"width": "32", "height": "32"}, expect=None).status == 200


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        ("*a*a*a*a*a*a*a*a*a*a*a*a*b", "a" * 60_000),
        ("a*a*a*a*a*a*a*a*a*a*a*a*b", "a " * 30_000),
        ("*" * 2000 + "b", "a" * 60_000),
        ("?" * 2000, "a" * 60_000),
        ("*a?a?a?a?a?a?a?*b", "a" * 60_000),
    ],
)
def test_pathological_push_rule_globs_finish_quickly(pattern: str, value: str) -> None:
    started = time.monotonic()
    for word_boundary in (False, True):
        assert glob_matches(pattern, value, word_boundary=word_boundary) is False
    assert time.monotonic() - started < 1.0
    assert glob_matches("*a*b", "xaxb")  # control


def test_a_push_rule_with_a_pathological_pattern_does_not_slow_sending(world) -> None:
    alice, bob, room, _ = world
    rule = {"pattern": "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", "actions": ["notify"]}
    bob.put("/pushrules/global/content/org.example.slow", rule, spec="/pushrules/global/{kind}/{ruleId}")
    started = time.monotonic()
    alice.put(
        f"/rooms/{q(room)}/send/m.room.message/{txn()}",
        {"msgtype": "m.text", "body": "a" * 60_000},
        spec=SEND,
    )
    assert time.monotonic() - started < 5
    bob.delete("/pushrules/global/content/org.example.slow")
    assert_unharmed(alice, bob, room)


def test_tokens_and_durations_take_ascii_digits_only() -> None:
    """Other scripts' digits (int() accepts them) are refused in sync/room tokens and config values."""
    from dagcore.clock import duration_ms
    from dagcore.http.errors import MatrixError
    from dagcore.sync.tokens import RoomToken, SyncToken

    assert SyncToken.parse("s12_3").events == 12 and RoomToken.parse("t5_9").stream == 9
    for bad in ("s\u0661\u0662", "s1_\u0663"):
        with pytest.raises(MatrixError):
            SyncToken.parse(bad)
    with pytest.raises(MatrixError):
        RoomToken.parse("t\u0665_9")
    assert duration_ms("90d") == 90 * 24 * 3600 * 1000
    assert duration_ms("\u0669\u0660d") is None


@pytest.mark.parametrize("what", ["send", "redact", "sendToDevice"])
def test_transaction_ids_are_bounded(world, what: str) -> None:
    """A transaction ID is stored to answer retries: 255 characters at most (it used to be a 500)."""
    alice, bob, room, _ = world

    def put(txn_id: str, *, expect: int):
        if what == "send":
            return alice.put(f"/rooms/{q(room)}/send/m.room.message/{txn_id}",
                             {"msgtype": "m.text", "body": "txn"}, expect=expect)  # fmt: skip
        if what == "redact":
            doomed = send_text(alice, room, "doomed")
            return alice.put(f"/rooms/{q(room)}/redact/{q(doomed)}/{txn_id}", {}, expect=expect)
        return alice.put(f"/sendToDevice/m.test/{txn_id}", {"messages": {}}, expect=expect)

    put("t" * 255, expect=200)  # control: at the limit
    assert_error(put("t" * 256, expect=400), 400, "M_INVALID_PARAM")
    assert_error(put("t" * 5000, expect=400), 400, "M_INVALID_PARAM")
    assert_unharmed(alice, bob, room)


@pytest.mark.parametrize("kind", ["override", "underride", "content", "room", "sender"])
def test_push_rule_ids_are_bounded(world, kind: str) -> None:
    alice = world[0]
    prefix = {"room": "!", "sender": "@"}.get(kind, "")
    body: dict = {"actions": []}
    if kind in ("override", "underride"):
        body["conditions"] = []
    if kind == "content":
        body["pattern"] = "x"
    ok = prefix + "r" * (255 - len(prefix))
    alice.put(f"/pushrules/global/{kind}/{q(ok)}", body)  # control: at the limit
    r = alice.put(f"/pushrules/global/{kind}/{q(ok + 'r')}", body, expect=400)
    assert_error(r, 400, "M_INVALID_PARAM")
    alice.delete(f"/pushrules/global/{kind}/{q(ok)}")

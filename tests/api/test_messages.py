"""/messages, /context and /timestamp_to_event over HTTP."""

from __future__ import annotations

import json

from dagcore.sync.tokens import SyncToken
from tests.support.client import MatrixClient, q
from tests.support.live import advance_clock

MESSAGES = "/rooms/{roomId}/messages"


def _room_with_messages(make_client, n: int = 12):
    alice = make_client()
    room = alice.create_room(preset="public_chat")
    ids = [alice.send(room, f"m{i}") for i in range(n)]
    return alice, room, ids


def _bodies(chunk: list[dict]) -> list[str]:
    return [e["content"]["body"] for e in chunk if e["type"] == "m.room.message"]


def _sync_token(c: MatrixClient, room_id: str) -> str:
    """A /sync next_batch, or (while /sync is not there) a sync token of the current position."""
    r = c.get("/sync", params={"timeout": 0}, expect=None)
    if r.status == 200 and isinstance(r.json, dict) and "next_batch" in r.json:
        return str(r.json["next_batch"])
    start = c.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 1}).json["start"]
    return str(SyncToken(events=int(start.split("_")[1])))


def test_backwards_pagination_walks_the_whole_history_in_pages(make_client) -> None:
    alice, room, _ = _room_with_messages(make_client)
    seen: list[str] = []
    token = None
    for _ in range(20):
        params = {"dir": "b", "limit": 5}
        if token:
            params["from"] = token
        r = alice.get(f"/rooms/{q(room)}/messages", params=params, spec=MESSAGES).json
        assert len(r["chunk"]) <= 5
        seen.extend(_bodies(r["chunk"]))
        if "end" not in r:
            break
        token = r["end"]
    assert seen == [f"m{i}" for i in reversed(range(12))]


def test_forward_pagination_from_a_backward_token_and_a_to_bound(make_client) -> None:
    alice, room, _ = _room_with_messages(make_client)
    back = alice.get(f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 4}, spec=MESSAGES).json
    assert _bodies(back["chunk"]) == ["m11", "m10", "m9", "m8"]
    forward = alice.get(
        f"/rooms/{q(room)}/messages", params={"dir": "f", "from": back["end"], "limit": 10}, spec=MESSAGES
    ).json
    assert _bodies(forward["chunk"]) == ["m8", "m9", "m10", "m11"]
    # ``to`` stops the walk: from the start forward, up to where the backward page ended.
    from_start = alice.get(
        f"/rooms/{q(room)}/messages", params={"dir": "f", "to": back["end"], "limit": 1000}, spec=MESSAGES
    ).json
    assert _bodies(from_start["chunk"]) == [f"m{i}" for i in range(8)]
    assert from_start["chunk"][0]["type"] == "m.room.create"


def test_a_sync_token_is_accepted_as_from(make_client) -> None:
    alice, room, _ = _room_with_messages(make_client, n=3)
    token = _sync_token(alice, room)
    alice.send(room, "after the token")
    back = alice.get(
        f"/rooms/{q(room)}/messages", params={"dir": "b", "from": token, "limit": 2}, spec=MESSAGES
    ).json
    assert _bodies(back["chunk"]) == ["m2", "m1"]
    forward = alice.get(f"/rooms/{q(room)}/messages", params={"dir": "f", "from": token}, spec=MESSAGES).json
    assert _bodies(forward["chunk"]) == ["after the token"]


def test_limits_and_garbage_parameters(make_client) -> None:
    alice, room, _ = _room_with_messages(make_client, n=3)
    path = f"/rooms/{q(room)}/messages"
    for params in (
        {"dir": "x"},
        {"dir": "b", "limit": "lots"},
        {"dir": "b", "limit": "-1"},
        {"dir": "b", "from": "garbage"},
        {"dir": "b", "from": "t1_99999999999999999999999"},
        {"dir": "b", "filter": "{not json"},
        {"dir": "b", "filter": json.dumps({"types": "m.room.message"})},
    ):
        r = alice.get(path, params=params, expect=400)  # the spec lists no 400 for /messages
        assert r.json["errcode"] in ("M_INVALID_PARAM", "M_MISSING_PARAM"), params
    assert alice.get(path, params={}, expect=400).json["errcode"] == "M_MISSING_PARAM"
    huge = alice.get(path, params={"dir": "b", "limit": 100000}, spec=MESSAGES).json
    assert len(huge["chunk"]) < 1000
    zero = alice.get(path, params={"dir": "b", "limit": 0}, spec=MESSAGES).json
    assert zero["chunk"] == []


def test_filters_by_type_sender_and_url(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    alice.send(room, "from alice")
    bob.send(room, "from bob")
    alice.send(room, content={"msgtype": "m.image", "body": "pic", "url": "mxc://localhost/abc"})
    alice.send(room, event_type="org.example.custom", content={"x": 1})
    path = f"/rooms/{q(room)}/messages"

    def chunk(flt: dict) -> list[dict]:
        return alice.get(path, params={"dir": "b", "filter": json.dumps(flt)}, spec=MESSAGES).json["chunk"]

    assert {e["type"] for e in chunk({"types": ["m.room.message"]})} == {"m.room.message"}
    assert {e["type"] for e in chunk({"types": ["org.example.*"]})} == {"org.example.custom"}
    assert "m.room.message" not in {e["type"] for e in chunk({"not_types": ["m.room.message"], "limit": 50})}
    assert _bodies(chunk({"senders": [bob.user_id], "types": ["m.room.message"]})) == ["from bob"]
    assert bob.user_id not in {e["sender"] for e in chunk({"not_senders": [bob.user_id]})}
    assert _bodies(chunk({"contains_url": True})) == ["pic"]
    assert "pic" not in _bodies(chunk({"contains_url": False, "types": ["m.room.message"]}))


def test_lazy_loading_members_returns_the_senders_member_events(make_client) -> None:
    alice, bob, carol = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    bob.send(room, "b")
    carol.send(room, "c")
    flt = json.dumps({"lazy_load_members": True, "types": ["m.room.message"]})
    r = alice.get(
        f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 1, "filter": flt}, spec=MESSAGES
    ).json
    assert _bodies(r["chunk"]) == ["c"]
    assert [m["state_key"] for m in r["state"]] == [carol.user_id]


def test_history_visibility_over_http(make_client) -> None:
    alice, bob, mallory = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    alice.put(f"/rooms/{q(room)}/state/m.room.history_visibility/", {"history_visibility": "joined"})
    alice.send(room, "private past")
    bob.join(room)
    alice.send(room, "present")
    r = bob.get(f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 50}, spec=MESSAGES).json
    assert _bodies(r["chunk"]) == ["present"]
    denied = mallory.get(f"/rooms/{q(room)}/messages", params={"dir": "b"}, expect=403, spec=MESSAGES)
    assert denied.json["errcode"] == "M_FORBIDDEN"
    alice.put(f"/rooms/{q(room)}/state/m.room.history_visibility/", {"history_visibility": "world_readable"})
    alice.send(room, "for everyone")
    peek = mallory.get(f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 50}, spec=MESSAGES).json
    assert "for everyone" in _bodies(peek["chunk"]) and "private past" not in _bodies(peek["chunk"])


def test_context_returns_events_around_with_tokens_and_state(make_client) -> None:
    alice, room, ids = _room_with_messages(make_client, n=9)
    spec = "/rooms/{roomId}/context/{eventId}"
    r = alice.get(f"/rooms/{q(room)}/context/{q(ids[4])}", params={"limit": 4}, spec=spec).json
    assert r["event"]["content"]["body"] == "m4"
    assert _bodies(r["events_before"]) == ["m3", "m2"]
    assert _bodies(r["events_after"]) == ["m5", "m6"]
    assert any(e["type"] == "m.room.create" for e in r["state"])
    back = alice.get(f"/rooms/{q(room)}/messages", params={"dir": "b", "from": r["start"], "limit": 2}).json
    assert _bodies(back["chunk"]) == ["m1", "m0"]
    forward = alice.get(f"/rooms/{q(room)}/messages", params={"dir": "f", "from": r["end"], "limit": 2}).json
    assert _bodies(forward["chunk"]) == ["m7", "m8"]
    lazy = alice.get(
        f"/rooms/{q(room)}/context/{q(ids[4])}",
        params={"limit": 2, "filter": json.dumps({"lazy_load_members": True})},
        spec=spec,
    ).json
    assert [e["type"] for e in lazy["state"]] == ["m.room.member"]
    stranger = make_client()
    stranger.get(f"/rooms/{q(room)}/context/{q(ids[4])}", expect=403)
    alice.get(f"/rooms/{q(room)}/context/{q('$missing')}", expect=404)


def test_timestamp_to_event_finds_the_closest_event_in_each_direction(dagma_server, make_client) -> None:
    alice = make_client()
    room = alice.create_room()
    first = alice.send(room, "first")
    first_ts = alice.get(f"/rooms/{q(room)}/event/{q(first)}").json["origin_server_ts"]
    # The server's clock moves a second on (instead of the test sleeping to part the timestamps).
    advance_clock(dagma_server.base_url, 1000)
    second = alice.send(room, "second")
    middle_ts = first_ts + 500
    assert alice.get(f"/rooms/{q(room)}/event/{q(second)}").json["origin_server_ts"] > middle_ts
    spec = "/rooms/{roomId}/timestamp_to_event"
    path = f"/_matrix/client/v1/rooms/{q(room)}/timestamp_to_event"
    assert alice.get(path, params={"ts": middle_ts, "dir": "f"}, spec=spec).json["event_id"] == second
    back = alice.get(path, params={"ts": middle_ts, "dir": "b"}, spec=spec).json
    assert back["event_id"] == first and back["origin_server_ts"] < middle_ts
    far = alice.get(path, params={"ts": middle_ts + 3_600_000, "dir": "f"}, expect=404, spec=spec)
    assert far.json["errcode"] == "M_NOT_FOUND"
    alice.get(path, params={"ts": "soon", "dir": "f"}, expect=400)
    alice.get(path, params={"ts": middle_ts}, expect=400)

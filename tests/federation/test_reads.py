"""Federation reads: event, state, state_ids, event_auth, backfill, get_missing_events,
timestamp_to_event — each only for a server in the room, and only what its users may see."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings

from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.persist_event import persist_received_event, send_local_event
from dagcore.store import events as event_store
from tests.federation.inbound_support import signed_request, trust
from tests.support.events import RemoteServer
from tests.support.rooms import current_state_ids, remote_event

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db]

ALICE = f"@alice:{settings.SERVER_NAME}"
FED = "/_matrix/federation/v1"


@pytest.fixture
def remote() -> RemoteServer:
    server = RemoteServer("remote.test")
    trust(server)
    return server


@pytest.fixture
def stranger() -> RemoteServer:
    server = RemoteServer("stranger.test")
    trust(server)
    return server


def _msg(room_id: str, body: str) -> str:
    return send_local_event(
        room_id=room_id,
        sender=ALICE,
        event_type="m.room.message",
        content={"msgtype": "m.text", "body": body},
    ).event.event_id


def _room(
    remote: RemoteServer, *, history: str = "shared", before_join: int = 0
) -> tuple[str, list[str], list[str]]:
    """A room with ``before_join`` messages, then a member of ``remote``, then 5 messages."""
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11", preset="public_chat"))
    send_local_event(
        room_id=room_id,
        sender=ALICE,
        event_type="m.room.history_visibility",
        content={"history_visibility": history},
        state_key="",
    )
    early = [_msg(room_id, f"early {i}") for i in range(before_join)]
    bob = "@bob:remote.test"
    persist_received_event(
        remote_event(remote, room_id, bob, "m.room.member", {"membership": "join"}, state_key=bob)
    )
    return room_id, early, [_msg(room_id, f"m{i}") for i in range(5)]


def _get(server: RemoteServer, path: str) -> tuple[int, Any]:
    return signed_request(server, "GET", path)


def test_a_server_in_the_room_reads_an_event(remote) -> None:
    room_id, _, msgs = _room(remote)
    status, body = _get(remote, f"{FED}/event/{quote(msgs[0])}")
    assert status == 200 and body["origin"] == settings.SERVER_NAME
    [pdu] = body["pdus"]
    assert pdu["content"]["body"] == "m0" and pdu["room_id"] == room_id


@pytest.mark.parametrize(
    "path",
    [
        "/event/{event}",
        "/state/{room}?event_id={event}",
        "/state_ids/{room}?event_id={event}",
        "/event_auth/{room}/{event}",
        "/backfill/{room}?v={event}&limit=5",
        "/timestamp_to_event/{room}?ts=0&dir=f",
    ],
)
def test_a_server_not_in_the_room_is_refused_every_read(remote, stranger, path: str) -> None:
    room_id, _, msgs = _room(remote)
    url = FED + path.format(room=quote(room_id), event=quote(msgs[-1]))
    status, body = _get(stranger, url)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # the permitted control: the server in the room may
    assert _get(remote, url)[0] == 200


def test_get_missing_events_is_refused_to_a_server_not_in_the_room(remote, stranger) -> None:
    room_id, _, msgs = _room(remote)
    path = f"{FED}/get_missing_events/{quote(room_id)}"
    body = {"earliest_events": [msgs[0]], "latest_events": [msgs[-1]], "limit": 10}
    assert signed_request(stranger, "POST", path, body)[0] == 403
    assert signed_request(remote, "POST", path, body)[0] == 200


def test_a_redacted_event_is_served_redacted(remote) -> None:
    room_id, _, msgs = _room(remote)
    send_local_event(
        room_id=room_id, sender=ALICE, event_type="m.room.redaction", content={}, redacts=msgs[1]
    )
    _, body = _get(remote, f"{FED}/event/{quote(msgs[1])}")
    assert body["pdus"][0]["content"] == {}
    _, body = _get(remote, f"{FED}/backfill/{quote(room_id)}?v={quote(msgs[2])}&limit=2")
    by_id = {p["content"].get("body", "<redacted>") for p in body["pdus"]}
    assert by_id == {"m2", "<redacted>"}


def test_state_and_state_ids_give_the_state_before_the_event_and_its_auth_chain(remote) -> None:
    room_id, _, msgs = _room(remote)
    state = current_state_ids(room_id)
    _, ids = _get(remote, f"{FED}/state_ids/{quote(room_id)}?event_id={quote(msgs[0])}")
    assert sorted(ids["pdu_ids"]) == sorted(state.values())
    assert (
        set(ids["auth_chain_ids"]) <= set(state.values())
        and state[("m.room.create", "")] in ids["auth_chain_ids"]
    )
    _, full = _get(remote, f"{FED}/state/{quote(room_id)}?event_id={quote(msgs[0])}")
    assert sorted(ids["pdu_ids"]) == sorted(
        e.event_id for e in event_store.get_events_by_ids(state.values()).values()
    )
    assert {(p["type"], p["state_key"]) for p in full["pdus"]} == set(state)
    # A state event's own key holds the state *before* it: the previous topic, or nothing.
    topic = send_local_event(
        room_id=room_id, sender=ALICE, event_type="m.room.topic", content={"topic": "t"}, state_key=""
    ).event.event_id
    _, before_topic = _get(remote, f"{FED}/state_ids/{quote(room_id)}?event_id={quote(topic)}")
    assert topic not in before_topic["pdu_ids"]


def test_event_auth_gives_the_events_auth_chain(remote) -> None:
    room_id, _, msgs = _room(remote)
    _, body = _get(remote, f"{FED}/event_auth/{quote(room_id)}/{quote(msgs[0])}")
    types = {(p["type"], p.get("state_key")) for p in body["auth_chain"]}
    assert {("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", ALICE)} <= types
    assert all(p["type"] != "m.room.message" for p in body["auth_chain"])


def test_backfill_walks_back_from_v_up_to_the_limit(remote) -> None:
    room_id, _, msgs = _room(remote)
    _, body = _get(remote, f"{FED}/backfill/{quote(room_id)}?v={quote(msgs[4])}&limit=3")
    assert [p["content"].get("body") for p in body["pdus"]] == ["m4", "m3", "m2"]


def test_get_missing_events_fills_the_gap_between_earliest_and_latest(remote) -> None:
    room_id, _, msgs = _room(remote)
    path = f"{FED}/get_missing_events/{quote(room_id)}"
    status, body = signed_request(
        remote, "POST", path, {"earliest_events": [msgs[0]], "latest_events": [msgs[4]], "limit": 10}
    )
    assert status == 200
    assert [p["content"]["body"] for p in body["events"]] == ["m1", "m2", "m3"]
    _, limited = signed_request(
        remote, "POST", path, {"earliest_events": [msgs[0]], "latest_events": [msgs[4]], "limit": 2}
    )
    assert [p["content"]["body"] for p in limited["events"]] == ["m2", "m3"]


def test_joined_history_is_not_shown_from_before_the_servers_users_joined(remote) -> None:
    room_id, early, msgs = _room(remote, history="joined", before_join=2)
    assert _get(remote, f"{FED}/event/{quote(early[0])}")[0] == 403
    assert _get(remote, f"{FED}/event/{quote(msgs[0])}")[0] == 200
    _, body = _get(remote, f"{FED}/backfill/{quote(room_id)}?v={quote(msgs[1])}&limit=20")
    bodies = [p["content"].get("body") for p in body["pdus"] if p["type"] == "m.room.message"]
    assert bodies == ["m1", "m0"]


def test_timestamp_to_event_finds_the_nearest_event(remote) -> None:
    room_id, _, msgs = _room(remote)
    last = event_store.get_event_by_id(msgs[-1])
    assert last is not None
    ts = last.event.pdu["origin_server_ts"]
    status, body = _get(remote, f"{FED}/timestamp_to_event/{quote(room_id)}?ts={ts + 10_000}&dir=b")
    assert status == 200 and body["event_id"] == msgs[-1] and body["origin_server_ts"] == ts
    status, body = _get(remote, f"{FED}/timestamp_to_event/{quote(room_id)}?ts={ts + 10_000}&dir=f")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert _get(remote, f"{FED}/timestamp_to_event/{quote(room_id)}?ts=1&dir=x")[0] == 400

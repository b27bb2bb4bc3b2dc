"""Typing, receipts and presence across servers, one server's side: the EDUs we take in (shown
by /sync) and the coalesced ones we send out.

Spec: server-server API "Typing Notifications", "Receipts", "Presence"
(https://spec.matrix.org/v1.19/server-server-api/); issue 11.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from dagcore import clock
from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.persist_event import persist_received_event
from dagcore.actions.presence import (
    KEEPALIVE_INTERVAL_MS,
    OFFLINE_AFTER_MS,
    REMOTE_OFFLINE_AFTER_MS,
    access_presence,
    do_send_presence_keepalive,
    do_set_presence,
    do_sync_presence,
    expire_presence,
)
from dagcore.actions.receipts import check_set_receipt
from dagcore.actions.typing import check_set_typing
from dagcore.clock import now_ms
from dagcore.federation import sender
from dagcore.federation.ephemeral import TYPING_SEND_WINDOW_MS
from dagcore.http.errors import MatrixError
from dagcore.models import FederationEphemeralEdu, User
from dagcore.store import outbox as outbox_store
from dagcore.sync import SyncRequest, build_sync_response
from dagcore.taskqueue.schedule import BEAT_SCHEDULE, beat_jobs_for_role
from tests.actions.roomkit import dagma_with, join, make_user, say
from tests.federation.inbound_support import send_txn, trust
from tests.support.events import RemoteServer
from tests.support.rooms import remote_event
from tests.sync.kit import DEFAULT_FILTER

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db]

BOB = "@bob:remote.test"


@pytest.fixture
def remote() -> RemoteServer:
    server = RemoteServer("remote.test")
    trust(server)
    return server


@pytest.fixture
def alice() -> User:
    return make_user("alice")


@pytest.fixture
def room(remote: RemoteServer, alice: User) -> str:
    """A room of Alice's that Bob of remote.test has joined."""
    room_id, _ = create_room(RoomSpec(creator=alice.user_id, room_version="11", preset="public_chat"))
    persist_received_event(
        remote_event(remote, room_id, BOB, "m.room.member", {"membership": "join"}, state_key=BOB)
    )
    return room_id


@pytest.fixture
def lonely_room(alice: User) -> str:
    """A room of Alice's that no remote.test user is in."""
    room_id, _ = create_room(RoomSpec(creator=alice.user_id, room_version="11", preset="public_chat"))
    return room_id


def _sync(user: User) -> dict[str, Any]:
    return build_sync_response(
        request=SyncRequest(
            user_id=user.user_id,
            device_id=None,
            device_key="x",
            since=None,
            full_state=False,
            filter=DEFAULT_FILTER,
        )
    ).body


def _ephemeral(user: User, room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = _sync(user).get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]


def _presence_of(user: User, sender_id: str) -> list[dict[str, Any]]:
    return [e for e in _sync(user).get("presence", {}).get("events", []) if e["sender"] == sender_id]


def _edu_txn(remote: RemoteServer, txn_id: str, *edus: dict[str, Any]) -> dict[str, Any]:
    status, body = send_txn(remote, txn_id, [], edus=list(edus))
    assert status == 200, body
    return body


def _typing(room_id: str, user_id: str = BOB, typing: Any = True) -> dict[str, Any]:
    return {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": user_id, "typing": typing}}


def _receipt(room_id: str, event_id: str, user_id: str = BOB, **data: Any) -> dict[str, Any]:
    receipt = {"event_ids": [event_id], "data": {"ts": 1_700_000_000_000, **data}}
    return {"edu_type": "m.receipt", "content": {room_id: {"m.read": {user_id: receipt}}}}


def _presence(user_id: str = BOB, **extra: Any) -> dict[str, Any]:
    entry = {"user_id": user_id, "presence": "online", "last_active_ago": 5000, **extra}
    return {"edu_type": "m.presence", "content": {"push": [entry]}}


# --------------------------------------------------------------------------- inbound


def test_a_remote_users_typing_receipt_and_presence_show_in_our_users_sync(remote, alice, room) -> None:
    event_id = say(alice, room, "read me")
    _edu_txn(remote, "t1", _typing(room), _receipt(room, event_id), _presence(status_msg="on a train"))
    assert _ephemeral(alice, room, "m.typing") == [{"type": "m.typing", "content": {"user_ids": [BOB]}}]
    (receipt,) = _ephemeral(alice, room, "m.receipt")
    assert receipt["content"][event_id]["m.read"][BOB]["ts"] == 1_700_000_000_000
    (presence,) = _presence_of(alice, BOB)
    assert presence["content"]["presence"] == "online"
    assert presence["content"]["status_msg"] == "on a train"
    assert presence["content"]["last_active_ago"] >= 5000
    # A stop ends it at once (no waiting for the timeout).
    _edu_txn(remote, "t2", _typing(room, typing=False))
    assert _ephemeral(alice, room, "m.typing") == []


def test_a_remote_users_presence_is_served_to_our_users_sharing_a_room(remote, alice, room) -> None:
    """``GET /presence/{userId}/status`` of another server's user: what their server last said
    (to users sharing a room with them; others are refused as for local users)."""
    _edu_txn(remote, "g1", _presence(status_msg="on a train"))
    seen = access_presence(requester=alice.user_id, user_id=BOB)
    assert (seen["presence"], seen["status_msg"]) == ("online", "on a train")
    with pytest.raises(MatrixError) as refused:
        access_presence(requester=make_user("zed").user_id, user_id=BOB)
    assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")


def test_edus_about_other_servers_users_are_dropped(remote, alice, room) -> None:
    event_id = say(alice, room)
    spoofed = "@eve:other.test"
    _edu_txn(remote, "s1", _typing(room, spoofed), _receipt(room, event_id, spoofed), _presence(spoofed))
    # Our own user cannot be spoken for either.
    _edu_txn(remote, "s2", _typing(room, alice.user_id), _presence(alice.user_id, status_msg="pwned"))
    assert _ephemeral(alice, room, "m.typing") == []
    assert _ephemeral(alice, room, "m.receipt") == []
    assert _presence_of(alice, spoofed) == []
    assert all(p["content"].get("status_msg") != "pwned" for p in _presence_of(alice, alice.user_id))


def test_edus_about_rooms_the_origin_does_not_share_are_dropped(remote, alice, room, lonely_room) -> None:
    event_id = say(alice, lonely_room)
    _edu_txn(remote, "r1", _typing(lonely_room), _receipt(lonely_room, event_id))
    _edu_txn(remote, "r2", _typing("!unknown:remote.test"))
    assert _ephemeral(alice, lonely_room, "m.typing") == []
    assert _ephemeral(alice, lonely_room, "m.receipt") == []
    # Presence of a user who shares no room with any of ours is not kept either.
    _edu_txn(remote, "r3", _presence("@stranger:remote.test"))
    assert _presence_of(alice, "@stranger:remote.test") == []


@pytest.mark.parametrize(
    "edu",
    [
        {"edu_type": "m.typing", "content": "nope"},
        {"edu_type": "m.typing", "content": {"room_id": "ROOM", "user_id": BOB, "typing": "yes"}},
        {"edu_type": "m.receipt", "content": []},
        {"edu_type": "m.receipt", "content": {"ROOM": {"m.read": {BOB: {"event_ids": "x", "data": {}}}}}},
        {"edu_type": "m.receipt", "content": {"ROOM": {"m.read.private": {BOB: {"event_ids": ["EV"]}}}}},
        {"edu_type": "m.receipt", "content": {"ROOM": {"m.read": {BOB: {"event_ids": ["$nope"]}}}}},
        {"edu_type": "m.receipt", "content": {"ROOM": {"m.read": {BOB: {"event_ids": ["EV"], "data": {"thread_id": 7}}}}}},
        {"edu_type": "m.presence", "content": {"push": "x"}},
        {"edu_type": "m.presence", "content": {"push": [{"user_id": BOB, "presence": "dancing"}]}},
        {"edu_type": "m.presence", "content": {"push": [{"user_id": BOB, "presence": "online", "last_active_ago": -1}]}},
        {"edu_type": "m.presence", "content": {"push": [{"user_id": BOB, "presence": "online", "status_msg": 3}]}},
    ],
)  # fmt: skip
def test_malformed_ephemeral_edus_are_dropped_and_the_transaction_succeeds(remote, alice, room, edu) -> None:
    event_id = say(alice, room)
    raw = json.dumps(edu).replace('"ROOM"', json.dumps(room)).replace('"EV"', json.dumps(event_id))
    answer = _edu_txn(remote, "m1", json.loads(raw))
    assert answer == {"pdus": {}}
    assert _ephemeral(alice, room, "m.typing") == []
    assert _ephemeral(alice, room, "m.receipt") == []
    assert _presence_of(alice, BOB) == []


def test_a_receipt_only_moves_forward(remote, alice, room) -> None:
    first = say(alice, room, "one")
    second = say(alice, room, "two")
    _edu_txn(remote, "f1", _receipt(room, second))
    _edu_txn(remote, "f2", _receipt(room, first))
    (receipt,) = _ephemeral(alice, room, "m.receipt")
    assert BOB in receipt["content"][second]["m.read"] and first not in receipt["content"]


# --------------------------------------------------------------------------- outbound


class Peer:
    def __init__(self) -> None:
        self.bodies: list[Any] = []

    def put_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> dict[str, Any]:
        self.bodies.append(content)
        return {"pdus": {}}

    def edus(self, edu_type: str) -> list[Any]:
        return [e["content"] for body in self.bodies for e in body["edus"] if e["edu_type"] == edu_type]


def _send() -> Peer:
    peer = Peer()
    sender.do_send_to_destination(destination="remote.test", transport=peer)
    return peer


def test_our_users_typing_receipts_and_presence_reach_the_servers_sharing_the_room(alice, room) -> None:
    _send()  # the join's own traffic
    event_id = say(alice, room)
    check_set_typing(user_id=alice.user_id, room_id=room, typing=True, timeout_ms=30_000)
    check_set_receipt(
        user_id=alice.user_id, room_id=room, receipt_type="m.read", event_id=event_id, thread_id=None
    )
    check_set_receipt(
        user_id=alice.user_id, room_id=room, receipt_type="m.read.private", event_id=event_id, thread_id=None
    )
    do_set_presence(user_id=alice.user_id, state="online", status_msg="here")
    peer = _send()
    assert peer.edus("m.typing") == [{"room_id": room, "user_id": alice.user_id, "typing": True}]
    (receipts,) = peer.edus("m.receipt")
    assert set(receipts[room]) == {"m.read"}  # a private receipt never leaves the server
    assert receipts[room]["m.read"][alice.user_id]["event_ids"] == [event_id]
    ((presence,),) = [p["push"] for p in peer.edus("m.presence")]
    assert presence["user_id"] == alice.user_id and presence["presence"] == "online"
    assert presence["status_msg"] == "here" and presence["currently_active"] is True
    assert FederationEphemeralEdu.objects.count() == 0
    assert outbox_store.get_destinations_with_pending() == []


def test_a_room_with_no_other_server_sends_nothing(alice, lonely_room) -> None:
    check_set_typing(user_id=alice.user_id, room_id=lonely_room, typing=True, timeout_ms=30_000)
    check_set_receipt(
        user_id=alice.user_id, room_id=lonely_room, receipt_type="m.read", event_id=say(alice, lonely_room),
        thread_id=None,
    )  # fmt: skip
    assert FederationEphemeralEdu.objects.count() == 0


def test_receipts_and_presence_coalesce_and_survive_an_outage(alice, room, monkeypatch) -> None:
    _send()
    first = say(alice, room, "one")
    second = say(alice, room, "two")
    _send()
    for event_id in (first, second):
        check_set_receipt(
            user_id=alice.user_id, room_id=room, receipt_type="m.read", event_id=event_id, thread_id=None
        )
    do_set_presence(user_id=alice.user_id, state="unavailable")
    do_set_presence(user_id=alice.user_id, state="online")
    assert FederationEphemeralEdu.objects.filter(destination="remote.test").count() == 2  # one each
    # remote.test is down for a minute: the typing notice made meanwhile is dropped, not sent late.
    check_set_typing(user_id=alice.user_id, room_id=room, typing=True, timeout_ms=30_000)
    later = now_ms() + TYPING_SEND_WINDOW_MS + 60_000
    monkeypatch.setattr(sender, "now_ms", lambda: later)
    peer = _send()
    assert peer.edus("m.typing") == []
    (receipts,) = peer.edus("m.receipt")
    assert receipts[room]["m.read"][alice.user_id]["event_ids"] == [second]
    ((presence,),) = [p["push"] for p in peer.edus("m.presence")]
    assert presence["presence"] == "online"


def test_an_update_made_while_its_transaction_is_in_flight_is_sent_next(alice, room) -> None:
    _send()
    first = say(alice, room, "one")
    _send()
    check_set_receipt(
        user_id=alice.user_id, room_id=room, receipt_type="m.read", event_id=first, thread_id=None
    )
    second = say(alice, room, "two")

    class RacingPeer(Peer):
        def put_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> dict[str, Any]:
            if not self.bodies:
                # Alice reads on while the first transaction is on the wire.
                check_set_receipt(
                    user_id=alice.user_id,
                    room_id=room,
                    receipt_type="m.read",
                    event_id=second,
                    thread_id=None,
                )
            return super().put_json(destination, path, content, **kwargs)

    peer = RacingPeer()
    sender.do_send_to_destination(destination="remote.test", transport=peer)
    sent = [r[room]["m.read"][alice.user_id]["event_ids"] for r in peer.edus("m.receipt")]
    assert sent == [[first], [second]]
    assert FederationEphemeralEdu.objects.count() == 0


def test_inbound_remote_updates_are_not_echoed_back(remote, alice, room) -> None:
    _send()
    event_id = say(alice, room)
    _send()
    _edu_txn(remote, "e1", _typing(room), _receipt(room, event_id), _presence())
    assert FederationEphemeralEdu.objects.count() == 0


# --------------------------------------------------------------------------- presence keep-alive


@pytest.fixture
def test_clock(settings, tmp_path, monkeypatch) -> Any:
    """This homeserver's test clock (``dagcore.clock``, as live servers use it): every reading
    of the time, the sender's included, moves together with ``advance_test_clock``."""
    settings.DAGMA = dagma_with(enable_test_hooks=True, config_dir=tmp_path)
    monkeypatch.setattr(clock, "_hooks", clock._TestHooks())
    return clock.advance_test_clock


def test_our_present_users_presence_is_sent_again_before_other_servers_time_it_out(
    remote, alice, room, test_clock
) -> None:
    """Synapse marks a remote user offline after 30 minutes without news; syncing sends none
    (nothing others see changes), so the keep-alive beat repeats it every 25 minutes."""
    carol, dave = make_user("carol"), make_user("dave")
    for user in (carol, dave):
        join(user, room)
    do_set_presence(user_id=alice.user_id, state="online", status_msg="here")
    do_set_presence(user_id=carol.user_id, state="unavailable")
    do_set_presence(user_id=dave.user_id, state="offline")
    _edu_txn(remote, "k1", _presence())  # Bob of remote.test: his server's to repeat, not ours
    _send()
    assert do_send_presence_keepalive() == 2  # at once: nothing waits on the interval itself
    _send()

    test_clock(ms=KEEPALIVE_INTERVAL_MS)
    for user in (alice, carol):  # still here: their clients keep syncing, which sends nothing
        for _ in range(2):
            do_sync_presence(user_id=user.user_id, set_presence=None if user is alice else "unavailable")
    assert FederationEphemeralEdu.objects.count() == 0

    assert do_send_presence_keepalive() == 2
    pushed = {p["user_id"]: p for edu in _send().edus("m.presence") for p in edu["push"]}
    assert set(pushed) == {alice.user_id, carol.user_id}
    assert pushed[alice.user_id]["presence"] == "online" and pushed[alice.user_id]["status_msg"] == "here"
    assert pushed[alice.user_id]["last_active_ago"] >= KEEPALIVE_INTERVAL_MS
    assert pushed[alice.user_id]["currently_active"] is False
    assert pushed[carol.user_id]["presence"] == "unavailable"

    # A user who stopped syncing is left to go offline (and that change is what gets sent).
    test_clock(ms=OFFLINE_AFTER_MS + 1)
    do_sync_presence(user_id=alice.user_id, set_presence=None)
    assert do_send_presence_keepalive() == 1
    assert expire_presence() == 1  # carol
    pushed = {p["user_id"]: p["presence"] for edu in _send().edus("m.presence") for p in edu["push"]}
    assert pushed == {alice.user_id: "online", carol.user_id: "offline"}


def test_the_keep_alive_runs_where_the_embassy_runs_well_within_the_remote_timeout() -> None:
    task, every = BEAT_SCHEDULE["federation-presence-keepalive"]
    assert (task, every) in beat_jobs_for_role("embassy").values()
    assert every * 1000 == KEEPALIVE_INTERVAL_MS < REMOTE_OFFLINE_AFTER_MS

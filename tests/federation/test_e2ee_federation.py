"""E2EE across servers, one server's side: the endpoints we serve, the EDUs we take in and
send out, and Tribune's use of other servers' keys (the network faked where we call out).

Spec: server-server API "End-to-End Encryption", "Device Management", "Send-to-device
messaging" (https://spec.matrix.org/v1.19/server-server-api/).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings

from dagcore.actions import e2e_keys, federated_keys, received_edus
from dagcore.actions.accounts import do_start_login_session
from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.cross_signing import check_cross_signing_upload, do_upload_cross_signing_keys
from dagcore.actions.persist_event import persist_received_event
from dagcore.actions.to_device import check_send_to_device
from dagcore.federation import sender
from dagcore.federation import user_keys as remote_api
from dagcore.federation.client import FederationUnreachable
from dagcore.models import FederationOutboxEdu, User
from dagcore.store import outbox as outbox_store
from dagcore.store import remote_devices as remote_store
from dagcore.store import to_device as inbox_store
from dagcore.store.streams import get_stream_positions
from tests.actions.roomkit import make_user
from tests.federation.inbound_support import send_txn, signed_request, trust
from tests.support.e2e_keys import CrossSigningKeys, DeviceKeys
from tests.support.events import RemoteServer
from tests.support.rooms import remote_event

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
def alice_device(alice: User) -> DeviceKeys:
    """Alice logged in on ADEV with device keys and three one-time keys."""
    do_start_login_session(
        user=alice, device_id="ADEV", initial_display_name="phone", want_refresh_token=False
    )
    device = DeviceKeys(alice.user_id, "ADEV")
    upload = e2e_keys.check_key_upload(
        {"device_keys": device.device_keys(), "one_time_keys": device.one_time_keys(3)},
        user_id=alice.user_id,
        device_id="ADEV",
    )
    e2e_keys.do_upload_keys(user_id=alice.user_id, device_id="ADEV", upload=upload)
    return device


@pytest.fixture
def room(remote: RemoteServer, alice: User) -> str:
    """A room of Alice's that Bob of remote.test has joined."""
    room_id, _ = create_room(RoomSpec(creator=alice.user_id, room_version="11", preset="public_chat"))
    persist_received_event(
        remote_event(remote, room_id, BOB, "m.room.member", {"membership": "join"}, state_key=BOB)
    )
    return room_id


def _bob_device(device_id: str = "BDEV") -> DeviceKeys:
    return DeviceKeys(BOB, device_id)


def _edus(destination: str, edu_type: str) -> list[dict[str, Any]]:
    return [
        json.loads(c)
        for c in FederationOutboxEdu.objects.filter(destination=destination, edu_type=edu_type)
        .order_by("id")
        .values_list("content", flat=True)
    ]


# --------------------------------------------------------------------------- serving


def test_user_devices_answers_our_users_devices_with_the_stream_id_of_the_last_change(
    remote, alice, alice_device
) -> None:
    status, answer = signed_request(remote, "GET", f"/_matrix/federation/v1/user/devices/{alice.user_id}")
    assert status == 200
    assert (
        answer["user_id"] == alice.user_id
        and isinstance(answer["stream_id"], int)
        and answer["stream_id"] > 0
    )
    (device,) = answer["devices"]
    assert device["device_id"] == "ADEV"
    assert device["keys"]["keys"] == alice_device.device_keys()["keys"]
    assert "device_display_name" not in device  # names are not shared with other servers
    assert "master_key" not in answer


def test_user_devices_refuses_other_servers_users_and_bad_ids_and_unsigned_requests(remote) -> None:
    status, answer = signed_request(remote, "GET", f"/_matrix/federation/v1/user/devices/{BOB}")
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")
    status, answer = signed_request(remote, "GET", "/_matrix/federation/v1/user/devices/not-a-user")
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")
    status, answer = signed_request(
        remote, "GET", f"/_matrix/federation/v1/user/devices/@a:{settings.SERVER_NAME}", sign=False
    )
    assert status == 401


def test_user_keys_query_answers_only_our_users_with_what_other_users_may_see(
    remote, alice, alice_device
) -> None:
    cross = CrossSigningKeys(alice.user_id)
    do_upload_cross_signing_keys(
        user_id=alice.user_id, upload=check_cross_signing_upload(cross.upload_body(), user_id=alice.user_id)
    )
    body: dict[str, Any] = {"device_keys": {alice.user_id: [], BOB: []}}
    status, answer = signed_request(remote, "POST", "/_matrix/federation/v1/user/keys/query", body)
    assert status == 200
    assert list(answer["device_keys"]) == [alice.user_id]
    assert list(answer["device_keys"][alice.user_id]) == ["ADEV"]
    assert answer["master_keys"][alice.user_id]["usage"] == ["master"]
    assert alice.user_id in answer["self_signing_keys"]
    assert "user_signing_keys" not in answer  # never shown to other servers
    status, answer = signed_request(
        remote, "POST", "/_matrix/federation/v1/user/keys/query", {"device_keys": {alice.user_id: ["OTHER"]}}
    )
    assert answer["device_keys"] == {alice.user_id: {}}


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({}, "M_MISSING_PARAM"),
        ({"device_keys": []}, "M_BAD_JSON"),
        ({"device_keys": {"@x:y": "ADEV"}}, "M_BAD_JSON"),
        ({"device_keys": {"nobody": []}}, "M_INVALID_PARAM"),
        ([1], "M_NOT_JSON"),
    ],
)
def test_user_keys_query_bad_input_is_400(remote, body: Any, errcode: str) -> None:
    status, answer = signed_request(remote, "POST", "/_matrix/federation/v1/user/keys/query", body)
    assert (status, answer["errcode"]) == (400, errcode)


def test_user_keys_claim_hands_out_each_one_time_key_once(remote, alice, alice_device) -> None:
    body = {
        "one_time_keys": {alice.user_id: {"ADEV": "signed_curve25519"}, BOB: {"BDEV": "signed_curve25519"}}
    }
    got = []
    for _ in range(3):
        status, answer = signed_request(remote, "POST", "/_matrix/federation/v1/user/keys/claim", body)
        assert status == 200 and list(answer["one_time_keys"]) == [alice.user_id]
        got += list(answer["one_time_keys"][alice.user_id]["ADEV"])
    assert len(set(got)) == 3
    status, answer = signed_request(remote, "POST", "/_matrix/federation/v1/user/keys/claim", body)
    assert answer["one_time_keys"] == {}  # all claimed, no fallback key


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({}, "M_MISSING_PARAM"),
        ({"one_time_keys": []}, "M_BAD_JSON"),
        ({"one_time_keys": {"@a:b": {"D": 1}}}, "M_BAD_JSON"),
        ({"one_time_keys": {"nobody": {}}}, "M_INVALID_PARAM"),
    ],
)
def test_user_keys_claim_bad_input_is_400(remote, body: Any, errcode: str) -> None:
    status, answer = signed_request(remote, "POST", "/_matrix/federation/v1/user/keys/claim", body)
    assert (status, answer["errcode"]) == (400, errcode)


# --------------------------------------------------------------------------- EDUs in


def _inbox(user: User, device_id: str) -> list[Any]:
    return inbox_store.get_messages(user_id=user.user_id, device_id=device_id, after=0, upto=2**62, limit=100)


def _to_device(message_id: str, *, sender: str = BOB, messages: Any = None, alice: User) -> dict[str, Any]:
    return {
        "edu_type": "m.direct_to_device",
        "content": {
            "sender": sender,
            "type": "m.room.encrypted",
            "message_id": message_id,
            "messages": messages if messages is not None else {alice.user_id: {"*": {"ciphertext": "x"}}},
        },
    }


def test_to_device_edus_are_delivered_once_per_message_id(remote, alice, alice_device) -> None:
    assert send_txn(remote, "t1", [], edus=[_to_device("m1", alice=alice)])[0] == 200
    (message,) = _inbox(alice, "ADEV")
    assert (message.sender, message.type, message.content) == (BOB, "m.room.encrypted", {"ciphertext": "x"})
    # The same EDU in a later transaction (a resend after a lost answer): not delivered again.
    assert send_txn(remote, "t2", [], edus=[_to_device("m1", alice=alice)])[0] == 200
    assert len(_inbox(alice, "ADEV")) == 1
    assert send_txn(remote, "t3", [], edus=[_to_device("m2", alice=alice)])[0] == 200
    assert len(_inbox(alice, "ADEV")) == 2


def test_spoofed_or_malformed_to_device_edus_are_dropped_and_the_transaction_still_succeeds(
    remote, alice, alice_device
) -> None:
    edus = [
        _to_device("s1", sender="@eve:elsewhere.test", alice=alice),  # not the origin's user
        _to_device("s2", messages={alice.user_id: "nope"}, alice=alice),
        {"edu_type": "m.direct_to_device", "content": "nope"},
        {"edu_type": "m.unknown.type", "content": {}},
        "not an object",
    ]
    status, answer = send_txn(remote, "bad", [], edus=edus)
    assert status == 200 and answer == {"pdus": {}}
    assert _inbox(alice, "ADEV") == []


def _update(device: DeviceKeys, stream_id: int, prev: list[int], **extra: Any) -> dict[str, Any]:
    return {
        "edu_type": "m.device_list_update",
        "content": {
            "user_id": device.user_id,
            "device_id": device.device_id,
            "stream_id": stream_id,
            "prev_id": prev,
            "deleted": False,
            "keys": device.device_keys(),
            **extra,
        },
    }


def _devices_answer(devices: list[DeviceKeys], stream_id: int) -> remote_api.RemoteDeviceList:
    return remote_api.parse_user_devices(
        {
            "user_id": BOB,
            "stream_id": stream_id,
            "devices": [{"device_id": d.device_id, "keys": d.device_keys()} for d in devices],
        },
        user_id=BOB,
        server="remote.test",
    )


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Fakes ``GET /user/devices`` of remote.test: answers ``state["answer"]``, counts calls."""
    state: dict[str, Any] = {"calls": 0, "answer": None}

    def fetch(*, user_id: str, timeout: float) -> remote_api.RemoteDeviceList:
        state["calls"] += 1
        if state["answer"] is None:
            raise FederationUnreachable("remote.test", "connection refused")
        return state["answer"]

    monkeypatch.setattr(remote_api, "fetch_user_devices", fetch)
    return state


def _query(alice: User, *users: str) -> dict[str, Any]:
    return e2e_keys.get_keys_for_users(requester=alice.user_id, device_keys={u: [] for u in users})


def test_a_tracked_users_list_is_fetched_once_then_kept_fresh_by_updates(
    remote, alice, alice_device, room, fetches
) -> None:
    one, two = _bob_device("ONE"), _bob_device("TWO")
    fetches["answer"] = _devices_answer([one], stream_id=5)
    assert list(_query(alice, BOB)["device_keys"][BOB]) == ["ONE"]
    assert fetches["calls"] == 1
    since = get_stream_positions()
    assert send_txn(remote, "u1", [], edus=[_update(two, 6, [5])])[0] == 200
    answer = _query(alice, BOB)
    assert sorted(answer["device_keys"][BOB]) == ["ONE", "TWO"] and answer["failures"] == {}
    assert fetches["calls"] == 1  # served from the cache
    changes = e2e_keys.get_device_list_changes(
        user_id=alice.user_id, from_events=since["events"], to_events=None,
        from_device_lists=since["device_lists"], to_device_lists=None,
    )  # fmt: skip
    assert BOB in changes.changed
    # A deletion, then the same update again (resent): applied once.
    deleted = _update(one, 7, [6], deleted=True)
    del deleted["content"]["keys"]
    send_txn(remote, "u2", [], edus=[deleted])
    send_txn(remote, "u3", [], edus=[deleted])
    assert list(_query(alice, BOB)["device_keys"][BOB]) == ["TWO"]
    assert remote_store.get_cached_lists([BOB])[BOB].stream_id == 7


def test_a_gap_in_prev_id_marks_the_list_stale_and_refetches_it(
    remote, alice, alice_device, room, fetches, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(received_edus, "enqueue", lambda name, *args: queued.append((name, args)))
    one, two, three = _bob_device("ONE"), _bob_device("TWO"), _bob_device("THREE")
    fetches["answer"] = _devices_answer([one], stream_id=5)
    _query(alice, BOB)
    # Update 6 was lost: 7 names it as its predecessor.
    send_txn(remote, "g1", [], edus=[_update(three, 7, [6])])
    assert remote_store.get_cached_lists([BOB])[BOB].stale
    assert queued == [(received_edus.RESYNC_TASK, (BOB,))]
    fetches["answer"] = _devices_answer([one, two, three], stream_id=7)
    assert federated_keys.do_resync_remote_device_list(user_id=BOB)
    assert fetches["calls"] == 2
    cached = remote_store.get_cached_lists([BOB])[BOB]
    assert (cached.stale, cached.stream_id) == (False, 7)
    assert sorted(_query(alice, BOB)["device_keys"][BOB]) == ["ONE", "THREE", "TWO"]
    assert fetches["calls"] == 2


def test_device_list_updates_about_other_servers_users_or_badly_signed_keys_are_dropped(
    remote, alice, alice_device, room, fetches
) -> None:
    fetches["answer"] = _devices_answer([_bob_device("ONE")], stream_id=5)
    _query(alice, BOB)
    eve = DeviceKeys("@eve:elsewhere.test", "EVE")
    forged = _update(_bob_device("TWO"), 6, [5])
    forged["content"]["keys"]["keys"]["ed25519:TWO"] = DeviceKeys(BOB, "TWO").device_keys()["keys"][
        "ed25519:TWO"
    ]
    assert (
        received_edus.do_receive_device_list_update(
            origin="remote.test", content=_update(eve, 1, [])["content"]
        )
        == "dropped"
    )
    assert (
        received_edus.do_receive_device_list_update(origin="remote.test", content=forged["content"])
        == "dropped"
    )
    assert list(_query(alice, BOB)["device_keys"][BOB]) == ["ONE"]


def test_signing_key_updates_are_stored_for_tracked_users(remote, alice, alice_device, room, fetches) -> None:
    fetches["answer"] = _devices_answer([_bob_device("ONE")], stream_id=5)
    _query(alice, BOB)
    cross = CrossSigningKeys(BOB)
    body = cross.upload_body()
    edu: dict[str, Any] = {
        "edu_type": "m.signing_key_update",
        "content": {
            "user_id": BOB,
            "master_key": body["master_key"],
            "self_signing_key": body["self_signing_key"],
        },
    }
    spoofed = {
        "edu_type": "m.signing_key_update",
        "content": {**edu["content"], "user_id": "@eve:elsewhere.test"},
    }
    assert send_txn(remote, "k1", [], edus=[spoofed, edu])[0] == 200
    answer = _query(alice, BOB)
    assert answer["master_keys"][BOB] == body["master_key"]
    assert answer["self_signing_keys"][BOB] == body["self_signing_key"]


# --------------------------------------------------------------------------- Tribune's use


def test_an_unreachable_server_is_listed_in_failures_and_others_still_answer(
    alice, alice_device, monkeypatch: pytest.MonkeyPatch
) -> None:
    carol = DeviceKeys("@carol:up.test", "CDEV")

    def query(*, server: str, device_keys: dict[str, list[str]], timeout: float) -> remote_api.RemoteKeys:
        if server == "down.test":
            raise FederationUnreachable(server, "connection refused")
        return remote_api.parse_user_keys(
            {"device_keys": {carol.user_id: {"CDEV": carol.device_keys()}, "@zed:up.test": {}}},
            server=server,
            asked=device_keys,
        )

    monkeypatch.setattr(remote_api, "query_user_keys", query)
    answer = _query(alice, carol.user_id, "@dan:down.test", alice.user_id)
    assert list(answer["device_keys"][carol.user_id]) == ["CDEV"]
    assert list(answer["device_keys"][alice.user_id]) == ["ADEV"]
    assert list(answer["failures"]) == ["down.test"] and answer["failures"]["down.test"]["status"] == 503
    assert "@zed:up.test" not in answer["device_keys"]  # not asked for: not taken


def test_a_remote_answer_with_badly_signed_device_keys_fails_that_server_and_is_not_used() -> None:
    carol = DeviceKeys("@carol:up.test", "CDEV")
    keys = carol.device_keys()
    keys["keys"]["curve25519:CDEV"] = "tampered"
    with pytest.raises(remote_api.BadKeyAnswer, match=r"up\.test"):
        remote_api.parse_user_keys(
            {"device_keys": {carol.user_id: {"CDEV": keys}}}, server="up.test", asked={carol.user_id: []}
        )


def test_keys_claim_asks_the_remote_server_and_lists_unreachable_ones(
    alice, alice_device, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, Any]] = []

    def claim(*, server: str, one_time_keys: Any, timeout: float) -> Any:
        asked.append((server, one_time_keys))
        if server == "down.test":
            raise FederationUnreachable(server, "timed out")
        return {BOB: {"BDEV": {"signed_curve25519:AAAA": {"key": "k"}}}}

    monkeypatch.setattr(remote_api, "claim_user_keys", claim)
    wanted = e2e_keys.check_claim_request(
        {BOB: {"BDEV": "signed_curve25519"}, "@x:down.test": {"X": "signed_curve25519"},
         alice.user_id: {"ADEV": "signed_curve25519"}}
    )  # fmt: skip
    answer = e2e_keys.do_claim_keys(wanted=wanted)
    assert answer["one_time_keys"][BOB] == {"BDEV": {"signed_curve25519:AAAA": {"key": "k"}}}
    assert next(iter(answer["one_time_keys"][alice.user_id]["ADEV"])).startswith("signed_curve25519:")
    assert list(answer["failures"]) == ["down.test"]
    assert sorted(s for s, _ in asked) == ["down.test", "remote.test"]


# --------------------------------------------------------------------------- EDUs out


def test_to_device_messages_for_remote_users_go_to_the_outbox_once(alice, alice_device) -> None:
    messages = {BOB: {"BDEV": {"ciphertext": "x"}}, "@carol:other.test": {"*": {"ciphertext": "y"}}}
    for _ in range(2):  # the client retries the same transaction: queued once
        check_send_to_device(
            sender=alice.user_id,
            device_key="ADEV",
            event_type="m.room.encrypted",
            txn_id="t1",
            messages=messages,
        )
    (edu,) = _edus("remote.test", "m.direct_to_device")
    assert edu["sender"] == alice.user_id and edu["type"] == "m.room.encrypted"
    assert edu["messages"] == {BOB: {"BDEV": {"ciphertext": "x"}}} and edu["message_id"]
    (other,) = _edus("other.test", "m.direct_to_device")
    assert other["message_id"] != edu["message_id"]


def test_device_changes_of_our_users_reach_servers_sharing_a_room_with_a_prev_id_chain(
    remote, alice, room
) -> None:
    do_start_login_session(user=alice, device_id="ADEV", initial_display_name=None, want_refresh_token=False)
    device = DeviceKeys(alice.user_id, "ADEV")
    upload = e2e_keys.check_key_upload(
        {"device_keys": device.device_keys()}, user_id=alice.user_id, device_id="ADEV"
    )
    e2e_keys.do_upload_keys(user_id=alice.user_id, device_id="ADEV", upload=upload)
    new_device, keys_uploaded = _edus("remote.test", "m.device_list_update")
    assert new_device["device_id"] == keys_uploaded["device_id"] == "ADEV"
    assert "keys" not in new_device and keys_uploaded["keys"]["keys"] == device.device_keys()["keys"]
    assert keys_uploaded["prev_id"] == [new_device["stream_id"]]
    # /user/devices names the last update: a server that resyncs then follows the chain.
    _status, answer = signed_request(remote, "GET", f"/_matrix/federation/v1/user/devices/{alice.user_id}")
    assert answer["stream_id"] == keys_uploaded["stream_id"]
    cross = CrossSigningKeys(alice.user_id)
    do_upload_cross_signing_keys(
        user_id=alice.user_id, upload=check_cross_signing_upload(cross.upload_body(), user_id=alice.user_id)
    )
    (signing,) = _edus("remote.test", "m.signing_key_update")
    assert signing["master_key"]["usage"] == ["master"] and "user_signing_key" not in signing


def test_the_sender_delivers_edus_in_the_destinations_transactions_and_forgets_them_on_200(
    alice, alice_device
) -> None:
    class Peer:
        def __init__(self) -> None:
            self.bodies: list[Any] = []

        def put_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> dict[str, Any]:
            self.bodies.append(content)
            return {"pdus": {}}

    check_send_to_device(
        sender=alice.user_id, device_key="ADEV", event_type="m.x", txn_id="s", messages={BOB: {"D": {"a": 1}}}
    )
    peer = Peer()
    result = sender.do_send_to_destination(destination="remote.test", transport=peer)
    assert result.outcome == "idle" and len(peer.bodies) == 1
    (edu,) = peer.bodies[0]["edus"]
    assert edu["edu_type"] == "m.direct_to_device" and edu["content"]["messages"] == {BOB: {"D": {"a": 1}}}
    assert _edus("remote.test", "m.direct_to_device") == []
    assert outbox_store.get_destinations_with_pending() == []


def test_a_servers_device_lists_are_fetched_several_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold /keys/query about many users of one server: their /user/devices requests overlap
    (each waits here until four are in flight at once; one after another would never get there)."""
    import threading

    from dagcore.actions import federated_keys

    in_flight = threading.Barrier(4, timeout=10)
    users = [f"@u{i}:remote.test" for i in range(8)]

    def fetch(*, user_id: str, timeout: float) -> remote_api.RemoteDeviceList:
        in_flight.wait()
        return remote_api.parse_user_devices(
            {"user_id": user_id, "stream_id": 1, "devices": []}, user_id=user_id, server="remote.test"
        )

    monkeypatch.setattr(remote_api, "fetch_user_devices", fetch)
    lists = federated_keys.fetch_device_lists(users, timeout=5)
    assert [device_list.user_id for device_list in lists] == users  # in the order asked


def test_many_never_cached_users_of_a_server_are_asked_in_one_keys_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One /user/keys/query instead of a /user/devices per user (which the peer's rc_federation
    would slow down); such lists have no stream position, so the first update resyncs them."""
    from dagcore.actions import federated_keys

    users = [f"@u{i:02}:remote.test" for i in range(federated_keys.BATCH_FROM)]
    queries: list[dict[str, list[str]]] = []
    singles: list[str] = []
    carol = DeviceKeys(users[0], "CDEV")

    def query(*, server: str, device_keys: dict[str, list[str]], timeout: float) -> remote_api.RemoteKeys:
        queries.append(device_keys)
        return remote_api.parse_user_keys(
            {"device_keys": {carol.user_id: {"CDEV": carol.device_keys()}}}, server=server, asked=device_keys
        )

    def fetch(*, user_id: str, timeout: float) -> remote_api.RemoteDeviceList:
        singles.append(user_id)
        return remote_api.parse_user_devices(
            {"user_id": user_id, "stream_id": 4, "devices": []}, user_id=user_id, server="remote.test"
        )

    monkeypatch.setattr(remote_api, "query_user_keys", query)
    monkeypatch.setattr(remote_api, "fetch_user_devices", fetch)
    stale = "@stale:remote.test"
    lists = federated_keys.fetch_device_lists([*users, stale], timeout=5, cold=frozenset(users))
    assert queries == [{u: [] for u in users}]
    assert singles == [stale]  # a stale list is resynced exactly, with its stream position
    by_user = {device_list.user_id: device_list for device_list in lists}
    assert [d for d, _, _ in by_user[carol.user_id].devices] == ["CDEV"]
    assert by_user[carol.user_id].stream_id == federated_keys.UNKNOWN_STREAM_ID
    assert by_user[stale].stream_id == 4
    # Fewer cold users than BATCH_FROM: each list by /user/devices (exact positions).
    queries.clear()
    singles.clear()
    federated_keys.fetch_device_lists(users[:3], timeout=5, cold=frozenset(users[:3]))
    assert queries == [] and sorted(singles) == users[:3]

"""Server ACLs (spec: ``m.room.server_acl`` and server-server API "Server Access Control
Lists") — the matching rules, and their enforcement on what another server sends and asks.
Also ``rc_federation``: one noisy origin is refused while the others are served."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.test import override_settings

from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.persist_event import persist_received_event
from dagcore.clock import now_ms
from dagcore.protocol.server_acl import glob_matches, is_ip_literal, server_acl_allows, strip_port
from dagcore.store import rooms as room_store
from dagcore.store import typing as typing_store
from embassy import ratelimit
from tests.actions.roomkit import dagma_with, make_user, say, set_state
from tests.federation.inbound_support import send_txn, signed_request, trust
from tests.support.events import RemoteServer
from tests.support.rooms import remote_event

# --------------------------------------------------------------------------- matching (pure)

EXAMPLE = {"allow": ["*"], "deny": ["*.evil.com", "evil.com"], "allow_ip_literals": False}


@pytest.mark.parametrize(
    ("server", "allowed"),
    [
        ("matrix.org", True),
        ("evil.com", False),
        ("evil.com:8448", False),  # the port is never considered
        ("evil.com:1234", False),
        ("sub.evil.com", False),
        ("EVIL.COM", False),  # case-insensitive globs
        ("notevil.com", True),
        ("1.2.3.4", False),  # allow_ip_literals: false
        ("1.2.3.4:8448", False),
        ("[::1]:8448", False),
        ("[2001:db8::1]", False),
    ],
)
def test_the_spec_example_acl(server: str, allowed: bool) -> None:
    assert server_acl_allows(EXAMPLE, server) is allowed


def test_acl_order_and_defaults() -> None:
    assert server_acl_allows(None, "anyone.org")  # 1. no ACL: allow
    assert not server_acl_allows({}, "anyone.org")  # 5. no allow rule: deny (even the sender)
    assert server_acl_allows({"allow": ["*"]}, "1.2.3.4")  # allow_ip_literals defaults to true
    assert server_acl_allows({"allow": ["*"], "allow_ip_literals": "no"}, "1.2.3.4")  # not a boolean: true
    assert not server_acl_allows({"allow": ["*"], "deny": ["*"]}, "a.org")  # 3. deny before allow
    assert server_acl_allows({"allow": ["?.org"]}, "a.org") and not server_acl_allows(
        {"allow": ["?.org"]}, "ab.org"
    )
    # Malformed lists and entries are ignored, as Synapse reads them.
    assert not server_acl_allows({"allow": "*"}, "a.org")
    assert server_acl_allows({"allow": [3, "*"], "deny": {"a.org": 1}}, "a.org")
    assert glob_matches("a.*.c", "a.b.x.c") and not glob_matches("a.*", "b.a.c")
    assert glob_matches("[x]", "[x]")  # regex metacharacters are literal
    assert (
        strip_port("[::1]:8448") == "[::1]"
        and strip_port("host:80") == "host"
        and strip_port("host") == "host"
    )
    assert is_ip_literal("10.0.0.1") and is_ip_literal("[::1]") and not is_ip_literal("example.com")


# --------------------------------------------------------------------------- enforcement

REMOTE = "remote.test"
BOB = f"@bob:{REMOTE}"
CAROL = "@carol:denied.test"


@pytest.fixture
def remote() -> RemoteServer:
    server = RemoteServer(REMOTE)
    trust(server)
    return server


@pytest.fixture
def denied() -> RemoteServer:
    server = RemoteServer("denied.test")
    trust(server)
    return server


@pytest.fixture
def acl_room(remote: RemoteServer, denied: RemoteServer) -> tuple[Any, str]:
    """Alice's room with Bob of remote.test and Carol of denied.test joined, then an ACL
    denying denied.test."""
    alice = make_user("alice")
    room_id, _ = create_room(RoomSpec(creator=alice.user_id, room_version="11", preset="public_chat"))
    persist_received_event(
        remote_event(remote, room_id, BOB, "m.room.member", {"membership": "join"}, state_key=BOB)
    )
    persist_received_event(
        remote_event(denied, room_id, CAROL, "m.room.member", {"membership": "join"}, state_key=CAROL)
    )
    set_state(alice, room_id, "m.room.server_acl", {"allow": ["*"], "deny": ["denied.test"]})
    return alice, room_id


@pytest.mark.django_db
def test_a_denied_servers_pdus_are_refused_in_the_send_answer(remote, denied, acl_room) -> None:
    _alice, room_id = acl_room
    from_denied = remote_event(denied, room_id, CAROL, "m.room.message", {"msgtype": "m.text", "body": "x"})
    status, body = send_txn(denied, "d1", [from_denied.pdu])
    assert status == 200
    assert "server ACL" in body["pdus"][from_denied.event_id]["error"]
    # Relayed by an allowed server: the sender's server is denied all the same.
    relayed = remote_event(denied, room_id, CAROL, "m.room.message", {"msgtype": "m.text", "body": "y"})
    status, body = send_txn(remote, "r1", [relayed.pdu])
    assert "server ACL" in body["pdus"][relayed.event_id]["error"]
    # The control: Bob's event is accepted.
    ok = remote_event(remote, room_id, BOB, "m.room.message", {"msgtype": "m.text", "body": "ok"})
    status, body = send_txn(remote, "r2", [ok.pdu])
    assert body["pdus"][ok.event_id] == {}


@pytest.mark.django_db
def test_a_denied_servers_edus_are_dropped(remote, denied, acl_room) -> None:
    _alice, room_id = acl_room
    room = room_store.get_room(room_id)
    assert room is not None
    typing = {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": CAROL, "typing": True}}
    assert send_txn(denied, "e1", [], edus=[typing])[0] == 200
    assert typing_store.get_typing_users(room_nids=[room.pk], now=now_ms()) == {}
    control = {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": BOB, "typing": True}}
    send_txn(remote, "e2", [], edus=[control])
    assert typing_store.get_typing_users(room_nids=[room.pk], now=now_ms()) == {room.pk: [BOB]}


@pytest.mark.django_db
def test_a_denied_server_cannot_join_knock_leave_or_read(remote, denied, acl_room) -> None:
    alice, room_id = acl_room
    event_id = say(alice, room_id)
    for path in (
        f"/_matrix/federation/v1/make_join/{room_id}/@dave:denied.test?ver=11",
        f"/_matrix/federation/v1/make_knock/{room_id}/@dave:denied.test?ver=11",
        f"/_matrix/federation/v1/make_leave/{room_id}/{CAROL}",
        f"/_matrix/federation/v1/state_ids/{room_id}?event_id={event_id}",
        f"/_matrix/federation/v1/backfill/{room_id}?v={event_id}&limit=5",
        f"/_matrix/federation/v1/event_auth/{room_id}/{event_id}",
        f"/_matrix/federation/v1/event/{event_id}",
    ):
        status, body = signed_request(denied, "GET", path)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), path
    join = remote_event(denied, room_id, "@dave:denied.test", "m.room.member", {"membership": "join"},
                        state_key="@dave:denied.test")  # fmt: skip
    status, body = signed_request(
        denied, "PUT", f"/_matrix/federation/v2/send_join/{room_id}/{join.event_id}", join.pdu
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # The control: remote.test may.
    status, _ = signed_request(
        remote, "GET", f"/_matrix/federation/v1/make_join/{room_id}/@erin:{REMOTE}?ver=11"
    )
    assert status == 200
    status, _ = signed_request(
        remote, "GET", f"/_matrix/federation/v1/state_ids/{room_id}?event_id={event_id}"
    )
    assert status == 200


@pytest.mark.django_db
def test_ip_literal_servers_follow_allow_ip_literals(remote) -> None:
    literal = RemoteServer("127.0.0.9")
    trust(literal)
    alice = make_user("alice")
    room_id, _ = create_room(RoomSpec(creator=alice.user_id, room_version="11", preset="public_chat"))
    set_state(alice, room_id, "m.room.server_acl", {"allow": ["*"], "allow_ip_literals": False})
    status, body = signed_request(
        literal, "GET", f"/_matrix/federation/v1/make_join/{room_id}/@x:127.0.0.9?ver=11"
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    set_state(alice, room_id, "m.room.server_acl", {"allow": ["*"], "allow_ip_literals": True})
    status, _ = signed_request(
        literal, "GET", f"/_matrix/federation/v1/make_join/{room_id}/@x:127.0.0.9?ver=11"
    )
    assert status == 200


# --------------------------------------------------------------------------- rc_federation


def test_the_limiter_refuses_an_origin_over_its_reject_limit_and_serves_the_others() -> None:
    limiter = ratelimit.FederationRateLimiter(
        window_size=1000, sleep_limit=100, sleep_delay=0, reject_limit=0, concurrent=1
    )
    release = threading.Event()
    entered = threading.Event()
    queued = threading.Event()

    def hold() -> None:
        with limiter.limit("noisy.test"):
            entered.set()
            release.wait(10)

    def wait_turn() -> None:
        queued.set()
        with limiter.limit("noisy.test"):
            pass

    first = threading.Thread(target=hold)
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=wait_turn)
    second.start()
    assert queued.wait(10)
    deadline = now_ms() + 10_000
    while limiter._state("noisy.test").waiting < 1 and now_ms() < deadline:
        threading.Event().wait(0.01)
    with pytest.raises(Exception) as refused, limiter.limit("noisy.test"):
        pass
    assert getattr(refused.value, "status", None) == 429
    assert refused.value.to_json()["retry_after_ms"] == 10  # type: ignore[attr-defined]
    with limiter.limit("quiet.test"):  # another origin is not held up
        pass
    release.set()
    first.join(10)
    second.join(10)
    assert limiter._state("noisy.test").waiting == 0 and limiter._state("noisy.test").running == 0


def test_requests_beyond_the_sleep_limit_wait_the_sleep_delay() -> None:
    slept: list[float] = []
    limiter = ratelimit.FederationRateLimiter(
        window_size=1000, sleep_limit=2, sleep_delay=500, reject_limit=50, concurrent=3,
        clock=lambda: 0.0, sleep=slept.append,
    )  # fmt: skip
    for _ in range(4):
        with limiter.limit("busy.test"):
            pass
    assert slept == [0.5, 0.5]
    with limiter.limit("other.test"):
        pass
    assert slept == [0.5, 0.5]


@pytest.mark.django_db
def test_an_origin_over_its_reject_limit_gets_429_from_the_embassy(remote) -> None:
    conf = {"window_size": 1000, "sleep_limit": 100, "sleep_delay": 0, "reject_limit": 0, "concurrent": 1}
    other = RemoteServer("other.test")
    trust(other)
    with override_settings(DAGMA=dagma_with(rc_federation=conf)):
        limiter = ratelimit.get_federation_ratelimiter(conf)
        release = threading.Event()
        holding = threading.Event()

        def hold() -> None:
            with limiter.transaction(REMOTE):
                holding.set()
                release.wait(10)

        def queue() -> None:
            with limiter.transaction(REMOTE):
                pass

        threads = [threading.Thread(target=hold), threading.Thread(target=queue)]
        threads[0].start()
        assert holding.wait(10)
        threads[1].start()
        deadline = now_ms() + 10_000
        while limiter._state(REMOTE, limiter._transactions).waiting < 1 and now_ms() < deadline:
            threading.Event().wait(0.01)
        try:
            status, body = send_txn(remote, "rl1", [])
            assert (status, body["errcode"]) == (429, "M_LIMIT_EXCEEDED")
            assert body["retry_after_ms"] == 10
            assert send_txn(other, "rl2", [])[0] == 200  # the others are served
        finally:
            release.set()
            for t in threads:
                t.join(10)
        assert send_txn(remote, "rl3", [])[0] == 200


@pytest.mark.django_db
def test_transactions_are_never_delayed_by_the_sleep_limit(remote, monkeypatch: pytest.MonkeyPatch) -> None:
    """As Synapse (its /send servlet is exempt): the eleventh transaction of a second used to
    sleep sleep_delay (500 ms by default), so every message after it arrived half a second
    late. Other requests of the origin are still delayed."""
    conf = {"window_size": 1000, "sleep_limit": 2, "sleep_delay": 500, "reject_limit": 50, "concurrent": 3}
    slept: list[float] = []
    with override_settings(DAGMA=dagma_with(rc_federation=conf)):
        limiter = ratelimit.get_federation_ratelimiter(conf)
        monkeypatch.setattr(limiter, "_sleep", slept.append)
        for n in range(6):
            assert send_txn(remote, f"burst{n}", [])[0] == 200
        assert slept == []
        for _ in range(4):
            signed_request(
                remote, "GET", "/_matrix/federation/v1/query/profile?user_id=%40nobody%3Atest.dagma.local"
            )
        assert slept == [0.5, 0.5]  # the third and fourth of the second

"""Pushers and push delivery, end to end: a real push gateway (an HTTP server in this test
process) receives what Dagma's real task path (a Celery worker on Redis, or the quick
start's in-process runner) POSTs to it. Every body is validated against the spec's
Push Gateway API.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.client import MatrixClient, q
from tests.support.live import ROOT, LiveServer, advance_clock
from tests.support.spec import validate_request

pytestmark = pytest.mark.live

NOTIFY = "/_matrix/push/v1/notify"


class Gateway:
    """A push gateway: records notifications; ``mode`` says how it answers."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self.mode = "ok"  # ok | fail | reject
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer: dict[str, Any]
                if gateway.mode == "fail":
                    gateway.refused += 1
                    answer, status = {"error": "down"}, 502
                else:
                    gateway.received.append({"path": self.path, "body": body})
                    pushkeys = [d["pushkey"] for d in body["notification"]["devices"]]
                    answer, status = {"rejected": pushkeys if gateway.mode == "reject" else []}, 200
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{NOTIFY}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notifications(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` notifications arrived; return them (bodies validated)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"gateway got {len(self.received)} of {count} notifications"
        for item in self.received:
            assert item["path"] == NOTIFY
            validate_request("POST", "/notify", item["body"])
        return [item["body"]["notification"] for item in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pusher_body(url: str, pushkey: str = "pk-1", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "http",
        "app_id": "org.example.app",
        "pushkey": pushkey,
        "app_display_name": "Example",
        "device_display_name": "Phone",
        "lang": "en",
        "data": {"url": url},
        **extra,
    }


def start_worker(server: LiveServer, workdir: Path) -> subprocess.Popen[bytes]:
    """A real Celery worker for the server's queues, as in the production layout."""
    env = {**server.env(), "DJANGO_SETTINGS_MODULE": "dagma_project.settings.worker"}
    log = open(workdir / "worker.log", "wb")  # noqa: SIM115 - the worker writes it while running
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dagma_project", "worker", "-Q", "push,maintenance,media",
         "--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def push_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Gateway]]:
    """A homeserver on PostgreSQL + Redis whose push task runs in a Celery worker; the
    gateway on 127.0.0.1 is allowed by ``ip_range_whitelist`` (as an operator would for a LAN gateway)."""
    workdir = tmp_path_factory.mktemp("push")
    gateway = Gateway()
    server = LiveServer(workdir, config={"ip_range_whitelist": ["127.0.0.1/32"]}).start()
    worker = start_worker(server, workdir)
    try:
        yield server, gateway
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        server.destroy()
        gateway.close()


@pytest.fixture
def gateway_pair(push_setup) -> Iterator[tuple[MatrixClient, MatrixClient, str, Gateway]]:
    server, gateway = push_setup
    gateway.received.clear()
    gateway.mode = "ok"
    alice = MatrixClient(server.base_url).register()
    bob = MatrixClient(server.base_url).register()
    room = alice.create_room(name="Mission Control", invite=[bob.user_id])
    bob.join(room)
    yield alice, bob, room, gateway


def test_a_message_is_pushed_to_the_recipients_gateway(gateway_pair) -> None:
    alice, bob, room, gateway = gateway_pair
    alice.post("/pushers/set", pusher_body(gateway.url), spec="/pushers/set")
    listed = alice.get("/pushers", spec="/pushers").json["pushers"]
    assert [(p["app_id"], p["pushkey"], p["data"]["url"]) for p in listed] == [
        ("org.example.app", "pk-1", gateway.url)
    ]
    alice.send(room, "my own message is not pushed to me")
    event_id = bob.send(room, "hello alice")
    [note] = gateway.notifications(1)
    assert note["event_id"] == event_id and note["room_id"] == room
    assert note["type"] == "m.room.message" and note["sender"] == bob.user_id
    assert note["content"]["body"] == "hello alice"
    assert note["room_name"] == "Mission Control"
    assert note["counts"]["unread"] == 1
    [device] = note["devices"]
    assert device["app_id"] == "org.example.app" and device["pushkey"] == "pk-1"
    assert device["data"] == {}  # the URL is for us, not for the gateway's app
    assert abs(device["pushkey_ts"] - time.time()) < 600  # seconds
    assert note["prio"] == "high" and device["tweaks"] == {"sound": "default"}  # .m.rule.room_one_to_one


def test_event_id_only_pushers_get_no_content(gateway_pair) -> None:
    alice, bob, room, gateway = gateway_pair
    body = pusher_body(gateway.url, pushkey="pk-ids")
    body["data"]["format"] = "event_id_only"
    alice.post("/pushers/set", body)
    event_id = bob.send(room, "secret words")
    [note] = gateway.notifications(1)
    assert note["event_id"] == event_id and "content" not in note and "sender" not in note
    assert note["devices"][0]["data"] == {"format": "event_id_only"}


def test_an_invite_is_pushed(gateway_pair) -> None:
    alice, bob, _, gateway = gateway_pair
    alice.post("/pushers/set", pusher_body(gateway.url, pushkey="pk-invite"))
    other = bob.create_room()
    bob.post(f"/rooms/{q(other)}/invite", {"user_id": alice.user_id})
    [note] = gateway.notifications(1)
    assert note["type"] == "m.room.member" and note["room_id"] == other
    assert note["user_is_target"] is True and note["content"]["membership"] == "invite"


def test_a_failing_gateway_loses_nothing(push_setup, gateway_pair) -> None:
    """Accepted events are never lost: while the gateway fails, the pusher keeps its position;
    the next event after recovery brings both, in order."""
    server, _ = push_setup
    alice, bob, room, gateway = gateway_pair
    alice.post("/pushers/set", pusher_body(gateway.url, pushkey="pk-retry"))
    gateway.mode, gateway.refused = "fail", 0
    first = bob.send(room, "while the gateway is down")
    failing_since, held_until = _wait_for_back_off(server, alice.user_id, "pk-retry")
    assert gateway.refused == 1  # the worker tried, and failed
    gateway.mode = "ok"
    # The server's clock moves past the back-off (a worker sees the same time as Tribune).
    advance_clock(server.base_url, held_until - failing_since + 1000)
    second = bob.send(room, "after it is back")
    notes = gateway.notifications(2)
    assert [n["event_id"] for n in notes] == [first, second]
    assert _pusher_state(server, alice.user_id, "pk-retry")[0] is None  # no longer failing


def test_a_failing_gateway_is_retried_after_half_the_time_it_has_been_failing(
    push_setup, gateway_pair
) -> None:
    """Back-off (dagcore.actions.pushers): a failing gateway is left alone for half as long as
    it has been failing (1 s at first); events meanwhile wait, and none is lost."""
    server, _ = push_setup
    worker_log = server.workdir / "worker.log"
    alice, bob, room, gateway = gateway_pair
    alice.post("/pushers/set", pusher_body(gateway.url, pushkey="pk-backoff"))
    gateway.mode, gateway.refused = "fail", 0
    first = bob.send(room, "the gateway fails")
    failing_since, held_until = _wait_for_back_off(server, alice.user_id, "pk-backoff")
    assert gateway.refused == 1
    assert 1_000 <= held_until - failing_since < 6_000  # the shortest back-off after a first failure
    # A minute later the next event retries the gateway, which fails again: failing for a
    # minute, the pusher is now left alone for half a minute.
    advance_clock(server.base_url, 60_000)
    second = _send_and_wait_for_the_worker(worker_log, lambda: bob.send(room, "a minute later"))
    assert gateway.refused == 2
    still_since, held_again = _pusher_state(server, alice.user_id, "pk-backoff")
    assert still_since == failing_since and held_again is not None
    # held = released + (released - failing_since) / 2, released a minute (and some seconds
    # of real time at most) after the first failure.
    assert 90_000 <= held_again - failing_since < 90_000 + 45_000
    # Within the back-off, an event does not make the worker try the gateway.
    third = _send_and_wait_for_the_worker(worker_log, lambda: bob.send(room, "during the back-off"))
    assert gateway.refused == 2
    # Past it, with the gateway back, every event arrives once, in order.
    gateway.mode = "ok"
    advance_clock(server.base_url, held_again - failing_since)
    fourth = bob.send(room, "the gateway is back")
    notes = gateway.notifications(4)
    assert [n["event_id"] for n in notes] == [first, second, third, fourth]


def test_a_rejected_pushkey_removes_the_pusher(gateway_pair) -> None:
    alice, bob, room, gateway = gateway_pair
    alice.post("/pushers/set", pusher_body(gateway.url, pushkey="pk-stale"))
    gateway.mode = "reject"
    bob.send(room, "to a stale pushkey")
    gateway.notifications(1)
    deadline = time.monotonic() + 10
    while alice.get("/pushers").json["pushers"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alice.get("/pushers").json["pushers"] == []


def test_ignored_users_and_muted_rooms_are_not_pushed(gateway_pair) -> None:
    """Rules are evaluated when the events are pushed (oldest first): a control event sent
    after the quiet ones arrives alone, so the quiet ones were considered and not pushed."""
    alice, bob, room, gateway = gateway_pair
    carol = MatrixClient(bob.base_url).register()
    alice.post(f"/rooms/{q(room)}/invite", {"user_id": carol.user_id})
    carol.join(room)
    alice.post("/pushers/set", pusher_body(gateway.url, pushkey="pk-quiet"))
    alice.put(
        f"/user/{q(alice.user_id)}/account_data/m.ignored_user_list", {"ignored_users": {bob.user_id: {}}}
    )
    other = alice.create_room(invite=[carol.user_id])
    carol.join(other)
    alice.put(f"/pushrules/global/room/{q(other)}", {"actions": []})  # mute the other room
    bob.send(room, "ignored sender")
    carol.send(other, "muted room")
    audible = carol.send(room, "audible")  # control: a sender not ignored, a room not muted
    # Pushes go out oldest first, so a quiet event that was pushed would have arrived before
    # (or with) the control: no waiting for something not to happen.
    notes = gateway.notifications(1)
    assert [n["event_id"] for n in notes] == [audible]


# --------------------------------------------------------------------------- /pushers/set


def test_pusher_management_follows_the_spec(push_setup) -> None:
    server, gateway = push_setup
    alice = MatrixClient(server.base_url).register()
    alice.post("/pushers/set", pusher_body(gateway.url))
    # Same app and pushkey: updated, not duplicated.
    alice.post("/pushers/set", pusher_body(gateway.url, device_display_name="Renamed"))
    [p] = alice.get("/pushers", spec="/pushers").json["pushers"]
    assert p["device_display_name"] == "Renamed" and p["kind"] == "http" and p["lang"] == "en"
    # append: false (the default) takes the pushkey away from another user.
    bob = MatrixClient(server.base_url).register()
    bob.post("/pushers/set", pusher_body(gateway.url))
    assert alice.get("/pushers").json["pushers"] == []
    # append: true shares it.
    alice.post("/pushers/set", pusher_body(gateway.url, append=True))
    assert len(alice.get("/pushers").json["pushers"]) == len(bob.get("/pushers").json["pushers"]) == 1
    # kind: null deletes (and deleting a missing pusher is no error).
    alice.post("/pushers/set", {**pusher_body(gateway.url), "kind": None})
    alice.post("/pushers/set", {**pusher_body(gateway.url), "kind": None})
    assert alice.get("/pushers").json["pushers"] == []


def test_a_pusher_goes_with_its_device(push_setup) -> None:
    server, gateway = push_setup
    alice = MatrixClient(server.base_url).register()
    phone = MatrixClient(server.base_url)
    login = phone.post(
        "/login",
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
         "password": "correct horse battery"},
        auth=False,
    ).json  # fmt: skip
    phone.access_token = login["access_token"]
    phone.post("/pushers/set", pusher_body(gateway.url, pushkey="phone"))
    alice.post("/pushers/set", pusher_body(gateway.url, pushkey="laptop"))
    phone.post("/logout")
    assert [p["pushkey"] for p in alice.get("/pushers").json["pushers"]] == ["laptop"]


@pytest.mark.parametrize(
    ("change", "errcode"),
    [
        ({"kind": "carrier-pigeon"}, "M_INVALID_PARAM"),
        ({"kind": "email"}, "M_INVALID_PARAM"),
        ({"data": {"url": "http://gw.example/_matrix/push/v1/other"}}, "M_INVALID_PARAM"),
        ({"data": {"url": "ftp://gw.example/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
        ({"data": {"url": "http://user:pw@gw.example/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
        ({"data": {}}, "M_INVALID_PARAM"),
        ({"data": "url"}, "M_INVALID_PARAM"),
        ({"data": {"url": "http://gw.example/_matrix/push/v1/notify", "format": "full"}}, "M_INVALID_PARAM"),
        ({"data": {"url": "http://gw.example/_matrix/push/v1/notify", "pad": "x" * 5000}}, "M_INVALID_PARAM"),
        ({"pushkey": "k" * 513}, "M_INVALID_PARAM"),
        ({"pushkey": 5}, "M_INVALID_PARAM"),
        ({"app_id": "a" * 65}, "M_INVALID_PARAM"),
        ({"app_display_name": None}, "M_MISSING_PARAM"),
        ({"lang": None}, "M_MISSING_PARAM"),
        ({"append": "yes"}, "M_INVALID_PARAM"),
        ({"kind": "MISSING"}, "M_MISSING_PARAM"),
    ],
)
def test_bad_pushers_are_refused_and_change_nothing(push_setup, change: dict[str, Any], errcode: str) -> None:
    server, _ = push_setup
    alice = MatrixClient(server.base_url).register()
    good = pusher_body("http://gw.example/_matrix/push/v1/notify")
    alice.post("/pushers/set", good)  # control
    bad = {**good, "pushkey": "other", **change}
    if change.get("kind") == "MISSING":
        del bad["kind"]
    r = alice.post("/pushers/set", bad, expect=400)
    assert r.json["errcode"] == errcode
    assert [p["pushkey"] for p in alice.get("/pushers").json["pushers"]] == ["pk-1"]


def test_the_number_of_pushers_is_bounded(push_setup) -> None:
    server, _ = push_setup
    alice = MatrixClient(server.base_url).register()
    url = "http://gw.example/_matrix/push/v1/notify"
    for i in range(32):
        alice.post("/pushers/set", pusher_body(url, pushkey=f"k{i}"))
    too_many = alice.post("/pushers/set", pusher_body(url, pushkey="one-too-many"), expect=400)
    assert too_many.json["errcode"] == "M_INVALID_PARAM"
    alice.post("/pushers/set", pusher_body(url, pushkey="k0", lang="de"))  # updating one still works
    assert len(alice.get("/pushers").json["pushers"]) == 32


# --------------------------------------------------------------------------- observing the worker


def _wait_for(predicate: Callable[..., bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def _pusher_state(server: LiveServer, user_id: str, pushkey: str) -> tuple[int | None, int | None]:
    """``(failing_since, claimed_until)`` of the pusher, as the server stored them."""
    [(failing_since, claimed_until)] = server.query(
        "SELECT failing_since, claimed_until FROM pushers WHERE user_id = %s AND pushkey = %s",
        (user_id, pushkey),
    )
    return failing_since, claimed_until


def _wait_for_back_off(server: LiveServer, user_id: str, pushkey: str) -> tuple[int, int]:
    """Wait until a worker released the pusher after a failure (``failing_since`` is only
    written then); returns ``(failing_since, held_until)``."""
    assert _wait_for(lambda: _pusher_state(server, user_id, pushkey)[0] is not None), "no failure recorded"
    failing_since, held_until = _pusher_state(server, user_id, pushkey)
    assert failing_since is not None and held_until is not None
    return failing_since, held_until


def _push_tasks(worker_log: Path) -> tuple[int, int]:
    """``(received, finished)`` push tasks, from the worker's log (one task at a time: solo pool)."""
    text = worker_log.read_text()
    received = len(re.findall(r"Task dagcore\.tasks\.push\.push_room\[[^]]+\] received", text))
    finished = len(re.findall(r"Task dagcore\.tasks\.push\.push_room\[[^]]+\] (?:succeeded|raised)", text))
    return received, finished


def _send_and_wait_for_the_worker(worker_log: Path, send: Callable[[], str]) -> str:
    """Send an event once the worker is idle, and return once it has run the event's push task."""

    def idle() -> bool:
        received, finished = _push_tasks(worker_log)
        return received == finished

    assert _wait_for(idle), "the worker stays busy"
    _, before = _push_tasks(worker_log)
    event_id = send()
    assert _wait_for(lambda: _push_tasks(worker_log)[1] > before), "the worker never ran the push task"
    return event_id


# --------------------------------------------------------------------------- SSRF, quick start


def test_gateways_on_private_addresses_are_refused_unless_allowed(tmp_path: Path) -> None:
    """The quick start's in-process runner (no Redis, default address policy): a gateway URL
    on 127.0.0.1 is chosen by the user, so it is never contacted; a whitelisted one is (control,
    on SQLite as the quick start runs)."""
    gateway = Gateway()
    servers = {
        "default": LiveServer(tmp_path / "default", redis=False).start(),
        # The quick start exactly: SQLite, no Redis.
        "allowed": LiveServer(
            tmp_path / "allowed",
            database="sqlite",
            redis=False,
            config={"ip_range_whitelist": ["127.0.0.1/32"]},
        ).start(),
    }
    try:
        for name, server in servers.items():
            alice = MatrixClient(server.base_url).register()
            bob = MatrixClient(server.base_url).register()
            room = alice.create_room(invite=[bob.user_id])
            bob.join(room)
            alice.post("/pushers/set", pusher_body(gateway.url, pushkey=name))
            bob.send(room, f"to {name}")
            if name == "default":
                assert _wait_for(lambda log=server.log_path: "blocked address" in log.read_text())
                assert gateway.received == []
            else:
                [note] = gateway.notifications(1)
                assert note["devices"][0]["pushkey"] == "allowed"
    finally:
        for server in servers.values():
            server.destroy()
        gateway.close()


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.dictionaries(
        st.sampled_from(["kind", "app_id", "pushkey", "app_display_name", "device_display_name", "lang",
                         "data", "append", "profile_tag"]),
        _json_values | st.sampled_from(["http", None, {"url": "http://gw.example/_matrix/push/v1/notify"}]),
        max_size=4,
    )
)  # fmt: skip
def test_fuzzed_pusher_bodies_never_cause_a_server_error(push_setup, changes: dict[str, Any]) -> None:
    server, _ = push_setup
    client = _fuzz_client(server)
    r = client.post(
        "/pushers/set", {**pusher_body("http://gw.example/_matrix/push/v1/notify"), **changes}, expect=None
    )
    assert r.status in (200, 400), r.raw.text
    if r.status == 400:
        assert r.json["errcode"] in ("M_INVALID_PARAM", "M_MISSING_PARAM", "M_BAD_JSON")
    # Whatever was accepted lists back in the spec's shape.
    client.get("/pushers", spec="/pushers")


_fuzz_clients: dict[str, MatrixClient] = {}


def _fuzz_client(server: LiveServer) -> MatrixClient:
    if server.base_url not in _fuzz_clients:
        _fuzz_clients[server.base_url] = MatrixClient(server.base_url).register()
    return _fuzz_clients[server.base_url]

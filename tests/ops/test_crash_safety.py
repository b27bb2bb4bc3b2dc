"""kill -9 in the production layout loses and duplicates nothing acknowledged.

One homeserver as deployed: ``serve tribune`` and a Celery worker (queues push, media,
maintenance) over PostgreSQL and Redis. Clients send bursts with transaction IDs; Tribune is
killed with SIGKILL mid-burst and restarted, and the clients retry what was not answered with
the same transaction IDs, as the spec asks of them. The worker is killed with SIGKILL while a
push gateway holds its request, and a new one takes over.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from dagcore.actions.pushers import CLAIM_MS
from tests.support.client import MatrixClient, q
from tests.support.live import CeleryWorker, LiveServer, advance_clock, wait_for

pytestmark = pytest.mark.live

NOTIFY = "/_matrix/push/v1/notify"
QUEUES = "federation,push,media,maintenance"


class HoldingGateway:
    """A push gateway that records every notification it gets and, while ``hold`` is set,
    keeps the request waiting (the worker is then stuck mid-push)."""

    def __init__(self) -> None:
        self.received: list[str] = []  # event IDs, in arrival order
        self.hold = threading.Event()
        self.release = threading.Event()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                gateway.received.append(body["notification"]["event_id"])
                if gateway.hold.is_set():
                    gateway.release.wait(60)
                data = json.dumps({"rejected": []}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the worker that asked is dead

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{NOTIFY}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class Layout:
    def __init__(self, tribune: LiveServer, worker: CeleryWorker, gateway: HoldingGateway) -> None:
        self.tribune, self.worker, self.gateway = tribune, worker, gateway


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    tribune = LiveServer(tmp_path_factory.mktemp("crash"), role="tribune",
                         config={"ip_range_whitelist": ["127.0.0.1/32"]})  # fmt: skip
    gateway = HoldingGateway()
    tribune.start()
    # The worker embeds beat (-B), as `celery beat` beside it would run.
    running = Layout(tribune, CeleryWorker(tribune, QUEUES, beat=True).start(), gateway)
    try:
        yield running
    finally:
        running.worker.stop()  # the one running now (a test replaces the one it kills)
        tribune.destroy()
        gateway.close()


def send_txn(client: MatrixClient, room: str, txn_id: str) -> str | None:
    """PUT /send with this transaction ID; the event ID, or None when no answer came."""
    try:
        r = client.request("PUT", f"/rooms/{q(room)}/send/m.room.message/{q(txn_id)}",
                           {"msgtype": "m.text", "body": txn_id}, expect=None)  # fmt: skip
    except httpx.HTTPError:
        return None
    return str(r.json["event_id"]) if r.status == 200 else None


def room_bodies(client: MatrixClient, room: str) -> Counter[str]:
    """How often each message body is in the room's timeline (every page of /messages)."""
    bodies: Counter[str] = Counter()
    token = None
    while True:
        params: dict[str, Any] = {"dir": "b", "limit": 100, **({"from": token} if token else {})}
        page = client.get(f"/rooms/{q(room)}/messages", params=params).json
        for event in page["chunk"]:
            if event["type"] == "m.room.message":
                bodies[event["content"]["body"]] += 1
        token = page.get("end")
        if not page["chunk"] or not token:
            return bodies


def test_tribune_killed_mid_burst_keeps_every_acknowledged_send_exactly_once(layout: Layout) -> None:
    tribune = layout.tribune
    alice = MatrixClient(tribune.base_url, timeout=10).register()
    bob = MatrixClient(tribune.base_url, timeout=10).register()
    room = alice.create_room(invite=[bob.user_id])
    bob.join(room)
    plan = {client: [f"{client.user_id}-{i}" for i in range(40)] for client in (alice, bob)}
    acked: dict[str, str] = {}
    lock = threading.Lock()

    def burst(client: MatrixClient) -> None:
        for txn_id in plan[client]:
            event_id = send_txn(client, room, txn_id)
            if event_id:
                with lock:
                    acked[txn_id] = event_id

    threads = [threading.Thread(target=burst, args=(c,)) for c in plan]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 15, "15 sends acknowledged")
    assert tribune.proc is not None
    tribune.proc.kill()  # kill -9, mid-burst
    tribune.proc.wait()
    tribune.proc = None
    for t in threads:
        t.join(60)
    acked_before_restart = dict(acked)
    assert 15 <= len(acked_before_restart) < 80, "the kill landed mid-burst"

    tribune.start()
    # The clients retry every send they got no answer to with the same transaction ID; a retry
    # of an answered one gives the same event back.
    for client, txn_ids in plan.items():
        for txn_id in txn_ids:
            event_id = send_txn(client, room, txn_id)
            assert event_id, f"retry of {txn_id} failed"
            if txn_id in acked_before_restart:
                assert event_id == acked_before_restart[txn_id], f"{txn_id} answered with another event"
            acked[txn_id] = event_id
    bodies = room_bodies(alice, room)
    every_txn = [t for txn_ids in plan.values() for t in txn_ids]
    assert {t: bodies[t] for t in every_txn} == dict.fromkeys(every_txn, 1)
    assert len(set(acked.values())) == len(every_txn)


def test_a_worker_killed_mid_push_loses_nothing_and_resends_nothing_recorded(layout: Layout) -> None:
    tribune, gateway = layout.tribune, layout.gateway
    alice = MatrixClient(tribune.base_url).register()
    bob = MatrixClient(tribune.base_url).register()
    room = alice.create_room(invite=[bob.user_id])
    bob.join(room)
    bob.post("/pushers/set", {"kind": "http", "app_id": "org.example.app", "pushkey": "pk-crash",
                              "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
                              "data": {"url": gateway.url}})  # fmt: skip
    delivered = [alice.send(room, f"before {i}") for i in range(3)]
    wait_for(lambda: set(delivered) <= set(gateway.received), "the first messages pushed")
    # Recorded: the pusher's position is past them (what "acknowledged" means for a push).
    wait_for(
        lambda: tribune.query("SELECT claimed_until FROM pushers WHERE pushkey = 'pk-crash'")[0][0] is None,
        "the pusher released with its position",
    )

    gateway.hold.set()
    held = [alice.send(room, f"held {i}") for i in range(3)]
    wait_for(lambda: set(gateway.received) & set(held), "the worker waiting on the gateway, mid-push")
    layout.worker.kill()  # kill -9, mid-push
    gateway.hold.clear()
    gateway.release.set()

    during = alice.send(room, "sent while no worker runs")  # Tribune does not need the worker
    layout.worker = CeleryWorker(tribune, QUEUES, beat=True, name="worker-after-kill").start()
    # The dead worker's claim on the pusher expires; then a nudge (a new message) resumes it.
    advance_clock(tribune.base_url, CLAIM_MS + 1000)
    after = alice.send(room, "after the restart")
    everything = delivered + held + [during, after]
    wait_for(lambda: set(everything) <= set(gateway.received), "every message pushed", timeout=60)
    counts = Counter(gateway.received)
    assert all(counts[e] == 1 for e in delivered), counts  # recorded before the kill: never again
    assert all(counts[e] == 1 for e in (during, after)), counts
    # Only what the killed run had in flight (sent, never recorded) may come twice.
    assert all(counts[e] <= 2 for e in held), counts


def test_beat_jobs_sent_by_celery_beat_are_recorded_and_a_second_beat_sends_nothing_twice(
    layout: Layout,
) -> None:
    """The worker's embedded beat sends ``federation-send-pending`` every 10 s; its runs are
    recorded by the worker's signals. A second beat of the same homeserver finds the job's
    lease taken or its period not over, and skips it."""
    tribune = layout.tribune

    def recorded() -> Any:
        rows = tribune.query(
            "SELECT outcome, last_started_ts, last_finished_ts, lease_owner FROM scheduled_job_runs "
            "WHERE name = 'federation-send-pending'"
        )
        return rows and rows[0][0] == "ok" and rows[0][2] >= rows[0][1] and rows[0]

    _, _, _, lease_owner = wait_for(recorded, "a beat run recorded by the worker", timeout=40)
    assert lease_owner == ""  # freed when the run ended
    second = CeleryWorker(tribune, QUEUES, beat=True, name="second-beat").start()
    try:
        wait_for(
            lambda: "federation-send-pending skipped" in second.log_text() + layout.worker.log_text(),
            "one beat skipping the job the other sent",
            timeout=40,
        )
    finally:
        second.stop()

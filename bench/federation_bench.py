"""Federation benchmark over real servers and TLS: prints numbers and ratios (issue #10, Embassy I).

    export DAGMA_NO_BOOTSTRAP=1 DAGMA_REDIS_URL=redis://127.0.0.1:6379/5
    .venv/bin/python bench/federation_bench.py --with-synapse --quick      # minutes
    .venv/bin/python bench/federation_bench.py --with-synapse --rounds 2   # full sizes

Servers (each on its own PostgreSQL database, federation on TLS listeners with certificates
from a throw-away CA, server names ``localhost:<port>``): Dagma D1 and D2 (``serve all``
without a broker, as the federation tests run them), Synapse S1 and S2 (PyPI, installed by
``tests/support/synapse.py``). Two more Dagma servers on Redis start for their scenarios:
an origin O (``serve tribune`` + ``serve embassy``, no worker: its outbox is never sent,
the benchmark replays it) and D3 in the production layout (``serve tribune`` + ``serve
embassy`` + a Celery worker on the ``federation`` queue).

Scenarios (X->Y: a user of X does it towards Y):

* ``join``: a remote join (``POST /join/{room}?server_name=``) into a room of 10 / 100 / 1,000
  members with 1,000 messages: D->S and S->S into the same Synapse room (the order alternates
  per round), S->D and D->D into a Dagma room. ``_s``: until ``/join`` answered; ``_full_s``:
  until the joiner's ``/joined_members`` lists every member (Synapse joining Synapse answers
  ``/join`` early with a partial state, MSC3706, and completes it in the background).
* ``send``: one message at a time, latency from the sender's ``PUT`` to the receiver's
  ``/sync`` long-poll holding it (p50/p95/p99): D->S, S->D, D->D and S->S.
* ``drain``: the receiver stopped, 1,000 messages sent over 10 rooms, the receiver restarted;
  its user then sends one message (the peer contacting the sender, which makes both Dagma and
  Synapse stop backing off and send at once). Seconds from that message until the receiver's
  database holds every message; order checked through the receiver's ``/messages``, which the
  benchmark also reads every 2 s for rooms still missing messages, as a reader would (Synapse
  catches a peer up with the newest event per room only; the rest it gets by backfill).
* ``inbound``: the same 50-PDU transactions, replayed one after the other (as a sender does):
  O's outbox for the receiver (1,000 messages over 10 rooms the receiver joined), signed by
  O's key, ``PUT`` to Dagma and to Synapse. PDUs/s until the receiver stored them all,
  ``/send`` p50/p95, server+DB CPU per PDU; and the receiver's local ``/send`` p50 (a local
  room, two local members), first idle, then while the replay runs ("federation busy").
* ``embassy_stopped``: D3, a room with a D2 member and two local members long-polling; local
  ``/send`` p50 with everything up, then with the Embassy and the worker stopped (only outbox
  rows written), then both restarted: seconds until D2 holds the backlog, in order. Synapse's
  figure is its ``/send`` p50 in the same room shape with its peer (S2) live.
* ``keys`` (issue #11): 100 users of Y, each with a device that uploaded signed device keys
  (``/keys/upload``), in a room of Y that a user of X joined; X's user ``POST /keys/query``
  for all of them: ``cold`` (the first query: X's server asks Y), ``warm`` p50/p95 (answered
  from what X tracks, kept fresh by ``m.device_list_update`` EDUs), ``new_device``: one user
  of Y logs in a second device and uploads its keys, ms until X's query lists it. D->S and
  S->S (S1 asking about S2's users), D->D.
* ``todevice`` (issue #11): ``PUT /sendToDevice`` to a device of a user of Y (sharing a room),
  one at a time, latency until that device's ``/sync`` long-poll holds it, p50/p95 over 30:
  D->S, S->D, D->D and S->S.
* ``media`` (issue #11): 1 MiB uploads on Y (5; ``--quick`` 3); a user of X ``GET
  /_matrix/client/v1/media/download/{Y}/{id}``: the first fetch (X's server fetches it over
  federation) and 10 more (from X's cache), bodies checked: D->S, D->D and S->S.

Rooms are version 10 (Synapse's default). Set-up (registration, filling rooms) is not
measured; Synapse hashes passwords with ``bcrypt_rounds: 4`` so a thousand registrations do
not take minutes. With ``--rounds N`` every scenario runs N times with fresh rooms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# After the path set-up: the benchmark reuses the client benchmark's helpers and the test
# suite's server harness (LiveServer, SynapsePeer, the test CA).
from bench.client_api_bench import CS, auth, machine_load, percentile, q, register  # noqa: E402
from bench.procstat import CpuMeter, ServerProcesses  # noqa: E402
from dagcore.protocol import signing  # noqa: E402
from dagcore.protocol.canonical_json import encode_canonical_json  # noqa: E402
from dagcore.protocol.request_auth import authorization_header  # noqa: E402
from tests.federation.certs import TestCA  # noqa: E402
from tests.support.e2e_keys import DeviceKeys  # noqa: E402
from tests.support.live import REDIS_URL, LiveServer  # noqa: E402
from tests.support.synapse import SynapsePeer, ensure_synapse  # noqa: E402

ROOM_VERSION = "10"
#: As tests/federation/conftest.py (importing it would need Django set up): peers on loopback.
LOOPBACK = ["127.0.0.0/8", "::1/128"]
SCENARIOS = ("join", "send", "drain", "inbound", "embassy_stopped", "keys", "todevice", "media")


# --------------------------------------------------------------------------- servers


class DagmaProcess:
    """Another role of a LiveServer's homeserver (``serve embassy``) or its Celery worker."""

    def __init__(self, server: LiveServer, args: list[str], log_name: str, env: dict[str, str] | None = None):
        self.server = server
        self.args = args
        self.log_name = log_name
        self.env = env or server.env()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DagmaProcess:
        log = open(self.server.workdir / self.log_name, "ab")  # noqa: SIM115 - the process writes it
        self.proc = subprocess.Popen(
            [sys.executable, *self.args], env=self.env, cwd=str(ROOT), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


def embassy_of(server: LiveServer) -> DagmaProcess:
    return DagmaProcess(server, [str(ROOT / "manage.py"), "serve", "embassy"], "embassy.log")


def worker_of(server: LiveServer) -> DagmaProcess:
    env = {**server.env(), "DJANGO_SETTINGS_MODULE": "dagma_project.settings.worker"}
    return DagmaProcess(
        server,
        ["-m", "celery", "-A", "dagma_project", "worker", "-Q", "federation", "--pool", "solo",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
        "worker.log", env,
    )  # fmt: skip


@dataclass
class Node:
    """One homeserver under test, whatever its software."""

    label: str
    kind: str  # "dagma" | "synapse"
    server: LiveServer | SynapsePeer
    ca: TestCA
    extra: list[DagmaProcess] = field(default_factory=list)
    users: list[tuple[str, str]] = field(default_factory=list)  # a pool of registered members
    _conn: psycopg.Connection[Any] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def server_name(self) -> str:
        return self.server.server_name

    @property
    def federation_url(self) -> str:
        url = self.server.federation_url
        assert url is not None
        return url

    @property
    def db_name(self) -> str:
        return self.server.db_name

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the server's database on one kept connection (the benchmark polls it: a new
        connection per poll would be a new PostgreSQL backend each time)."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                f"postgresql://postgres@127.0.0.1:5432/{self.db_name}", autocommit=True
            )
        return list(self._conn.execute(sql, params).fetchall())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def stop(self) -> None:
        for proc in self.extra:
            proc.stop()
        self.server.stop()

    def start(self) -> None:
        self.server.start()
        for proc in self.extra:
            proc.start()
        if self.extra:
            wait_for_keys(self)

    def processes(self) -> ServerProcesses:
        assert self.server.proc is not None
        return ServerProcesses(self.server.proc.pid, self.db_name)

    def message_bodies(self, room_ids: list[str]) -> dict[str, list[str]]:
        """Message bodies per room in the receiver's database (timeline events only)."""
        if self.kind == "dagma":
            rows = self.query(
                "SELECT r.room_id, e.json FROM events e JOIN rooms r ON r.id = e.room_id "
                "WHERE r.room_id = ANY(%s) AND e.type = 'm.room.message' AND e.stream_ordering IS NOT NULL "
                "AND NOT e.soft_failed ORDER BY e.stream_ordering",
                (room_ids,),
            )
        else:
            rows = self.query(
                "SELECT e.room_id, j.json FROM events e JOIN event_json j ON j.event_id = e.event_id "
                "WHERE e.room_id = ANY(%s) AND e.type = 'm.room.message' AND NOT e.outlier "
                "AND NOT EXISTS (SELECT 1 FROM rejections x WHERE x.event_id = e.event_id) "
                "ORDER BY e.topological_ordering, e.stream_ordering",
                (room_ids,),
            )
        out: dict[str, list[str]] = {r: [] for r in room_ids}
        for room_id, raw in rows:
            body = json.loads(raw).get("content", {}).get("body")
            if isinstance(body, str):
                out[room_id].append(body)
        return out

    def message_counts(self, room_ids: list[str], prefix: str = "") -> dict[str, int]:
        """Timeline messages stored per room, whose body starts with ``prefix`` (a cheap poll)."""
        if self.kind == "dagma":
            sql = (
                "SELECT r.room_id, count(*) FROM events e JOIN rooms r ON r.id = e.room_id "
                "WHERE r.room_id = ANY(%s) AND e.type = 'm.room.message' AND e.stream_ordering IS NOT NULL "
                "AND NOT e.soft_failed AND (e.json::jsonb -> 'content' ->> 'body') LIKE %s GROUP BY r.room_id"
            )
        else:
            sql = (
                "SELECT e.room_id, count(*) FROM events e JOIN event_json j ON j.event_id = e.event_id "
                "WHERE e.room_id = ANY(%s) AND e.type = 'm.room.message' AND NOT e.outlier "
                "AND NOT EXISTS (SELECT 1 FROM rejections x WHERE x.event_id = e.event_id) "
                "AND (j.json::jsonb -> 'content' ->> 'body') LIKE %s GROUP BY e.room_id"
            )
        counts = dict.fromkeys(room_ids, 0)
        counts.update({room_id: int(n) for room_id, n in self.query(sql, (room_ids, prefix + "%"))})
        return counts

    def message_count(self, room_ids: list[str]) -> int:
        return sum(self.message_counts(room_ids).values())

    def outbox_pending(self, destination: str) -> int:
        [(count,)] = self.query(
            "SELECT count(*) FROM federation_outbox WHERE destination = %s AND dead_letter IS NULL",
            (destination,),
        )
        return int(count)


def https_client(ca: TestCA) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca.cert_path)), timeout=120)


def wait_for_keys(node: Node, timeout: float = 60.0) -> None:
    """Until the node's Embassy answers on its TLS federation listener."""
    deadline = time.monotonic() + timeout
    context = ssl.create_default_context(cafile=str(node.ca.cert_path))
    while time.monotonic() < deadline:
        try:
            r = httpx.get(node.federation_url + "/_matrix/key/v2/server", verify=context, timeout=2)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # start-up: polling the listener, with a deadline
    raise RuntimeError(f"{node.label}'s Embassy did not answer within {timeout}s")


def dagma_config(ca: TestCA) -> dict[str, Any]:
    return {"federation_custom_ca_list": [str(ca.cert_path)], "ip_range_whitelist": LOOPBACK}


def start_dagma(label: str, root: Path, ca: TestCA) -> Node:
    cert = ca.issue("localhost", "127.0.0.1", stem=label.lower())
    server = LiveServer(root / label, federation_tls=(cert.cert_path, cert.key_path), redis=False,
                        config=dagma_config(ca))  # fmt: skip
    node = Node(label, "dagma", server, ca)
    server.start()
    return node


def start_split_dagma(label: str, root: Path, ca: TestCA, *, worker: bool) -> Node:
    """``serve tribune`` + ``serve embassy`` on Redis (+ a Celery worker for ``federation``)."""
    cert = ca.issue("localhost", "127.0.0.1", stem=label.lower())
    server = LiveServer(root / label, federation_tls=(cert.cert_path, cert.key_path), redis=True,
                        role="tribune", config=dagma_config(ca))  # fmt: skip
    node = Node(label, "dagma", server, ca)
    server.start()
    node.extra.append(embassy_of(server).start())
    if worker:
        node.extra.append(worker_of(server).start())
    wait_for_keys(node)
    return node


def start_synapse(label: str, root: Path, ca: TestCA, venv: Path) -> Node:
    cert = ca.issue("localhost", "127.0.0.1", stem=label.lower())
    peer = SynapsePeer(root / label, ca=ca, cert=cert, venv=venv)
    peer.write_config()
    config = yaml.safe_load(peer.config_path.read_text())
    config["bcrypt_rounds"] = 4  # set-up speed only: registering a thousand members
    peer.config_path.write_text(yaml.safe_dump(config))
    node = Node(label, "synapse", peer, ca)
    peer.start()
    return node


def destroy(node: Node) -> None:
    node.close()
    for proc in node.extra:
        proc.stop()
    node.server.destroy()


# --------------------------------------------------------------------------- client helpers


def client(base: str, timeout: float = 600) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, timeout=timeout, limits=httpx.Limits(max_connections=64))


async def create_room(http: httpx.AsyncClient, token: str, **body: Any) -> str:
    body.setdefault("room_version", ROOM_VERSION)
    body.setdefault("preset", "public_chat")
    r = await http.post(CS + "/createRoom", json=body, headers=auth(token))
    r.raise_for_status()
    return str(r.json()["room_id"])


async def join(http: httpx.AsyncClient, token: str, room_id: str, via: str | None = None) -> None:
    params = {"server_name": via} if via else None
    r = await http.post(f"{CS}/join/{q(room_id)}", params=params, json={}, headers=auth(token))
    if r.status_code != 200:
        raise RuntimeError(f"join {room_id} via {via}: {r.status_code} {r.text[:500]}")


async def send(http: httpx.AsyncClient, token: str, room_id: str, body: str) -> str:
    r = await http.put(f"{CS}/rooms/{q(room_id)}/send/m.room.message/{secrets.token_hex(8)}",
                       json={"msgtype": "m.text", "body": body}, headers=auth(token))  # fmt: skip
    r.raise_for_status()
    return str(r.json()["event_id"])


async def gather_limited(jobs: list[Callable[[], Awaitable[Any]]], at_once: int = 8) -> list[Any]:
    slots = asyncio.Semaphore(at_once)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with slots:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def ensure_users(node: Node, count: int) -> list[tuple[str, str]]:
    """At least ``count`` registered members in the node's pool."""
    missing = count - len(node.users)
    if missing > 0:
        async with client(node.base_url) as http:
            node.users += await gather_limited([lambda: register(http, "m") for _ in range(missing)])
    return node.users[:count]


async def fresh_user(node: Node, prefix: str) -> str:
    async with client(node.base_url) as http:
        return (await register(http, prefix))[1]


async def populate_room(node: Node, members: int, events: int) -> tuple[str, str]:
    """A public room on ``node`` with ``members`` local members and ``events`` messages: (room, owner token)."""
    users = await ensure_users(node, members)
    owner = users[0][1]
    async with client(node.base_url) as http:
        room_id = await create_room(http, owner)
        await gather_limited([lambda tok=tok: join(http, tok, room_id) for _, tok in users[1:]])
        await gather_limited([lambda i=i: send(http, owner, room_id, f"history {i}") for i in range(events)])
    return room_id, owner


def sync_filter(room_id: str) -> str:
    return json.dumps({"room": {"rooms": [room_id], "timeline": {"limit": 50}, "state": {"lazy_load_members": True}},
                       "presence": {"types": []}, "account_data": {"types": []}}, separators=(",", ":"))  # fmt: skip


class Receiver:
    """A user long-polling ``/sync`` for one room; records when each message body arrived."""

    def __init__(self, http: httpx.AsyncClient, token: str, room_id: str) -> None:
        self.http = http
        self.token = token
        self.room_id = room_id
        self.filter = sync_filter(room_id)
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Event] = {}
        self.task: asyncio.Task[None] | None = None
        self.since = ""

    async def start(self) -> Receiver:
        r = await self.http.get(
            CS + "/sync", params={"timeout": 0, "filter": self.filter}, headers=auth(self.token)
        )
        r.raise_for_status()
        self.since = r.json()["next_batch"]
        self.task = asyncio.create_task(self._loop())
        return self

    async def _loop(self) -> None:
        while True:
            params = {"timeout": 30000, "since": self.since, "filter": self.filter}
            r = await self.http.get(CS + "/sync", params=params, headers=auth(self.token))
            now = time.perf_counter()
            r.raise_for_status()
            data = r.json()
            self.since = data["next_batch"]
            room = data.get("rooms", {}).get("join", {}).get(self.room_id, {})
            for event in room.get("timeline", {}).get("events", []):
                body = event.get("content", {}).get("body")
                if isinstance(body, str) and body not in self.arrived:
                    self.arrived[body] = now
                    waiter = self.waiters.get(body)
                    if waiter is not None:
                        waiter.set()

    async def wait(self, body: str, timeout: float = 120) -> float:
        if body not in self.arrived:
            event = self.waiters.setdefault(body, asyncio.Event())
            await asyncio.wait_for(event.wait(), timeout)
        return self.arrived[body]

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def wait_until(check: Callable[[], Any], what: str, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)  # polling what a server stored, with a deadline


# --------------------------------------------------------------------------- join


async def timed_join(joiner: Node, resident: Node, room_id: str, members: int) -> dict[str, float]:
    token = await fresh_user(joiner, "joiner")
    async with client(joiner.base_url) as http:
        spy = start_py_spy(joiner, f"join{members}-{joiner.label}-{resident.label}")
        t = time.perf_counter()
        await join(http, token, room_id, resident.server_name)
        join_s = time.perf_counter() - t
        await asyncio.to_thread(stop_py_spy, spy)
        partial = joiner.kind == "synapse" and bool(
            joiner.query("SELECT 1 FROM partial_state_rooms WHERE room_id = %s", (room_id,))
        )
        deadline = time.monotonic() + 600
        while True:
            r = await http.get(f"{CS}/rooms/{q(room_id)}/joined_members", headers=auth(token))
            if r.status_code == 200 and len(r.json().get("joined", {})) >= members + 1:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{joiner.label} never saw {members + 1} members of {room_id}")
            await asyncio.sleep(0.1)  # polling the joiner's view, with a deadline
        full_s = time.perf_counter() - t
    return {"s": join_s, "full_s": full_s, "partial": float(partial)}


async def bench_join(
    nodes: dict[str, Node], sizes: list[int], events: int, round_no: int
) -> dict[str, float]:
    d1, d2, s1, s2 = nodes["D1"], nodes["D2"], nodes.get("S1"), nodes.get("S2")
    out: dict[str, float] = {}
    for size in sizes:
        print(f"  join: filling rooms of {size} members, {events} messages ...", flush=True)
        if s1 is not None and s2 is not None:
            room_s, _ = await populate_room(s1, size, events)
            order = [("D->S", d1), ("S->S", s2)]
            if round_no % 2:
                order.reverse()  # the second joiner finds the resident's caches warm: alternate
            for tag, joiner in order:
                res = await timed_join(joiner, s1, room_s, size)
                print(f"  join {size} {tag}: {res}", flush=True)
                out[f"join{size}_{tag}_s"] = res["s"]
                out[f"join{size}_{tag}_full_s"] = res["full_s"]
        room_d, _ = await populate_room(d1, size, events)
        joiners = [("D->D", d2)] + ([("S->D", s2)] if s2 is not None else [])
        if round_no % 2:
            joiners.reverse()
        for tag, joiner in joiners:
            res = await timed_join(joiner, d1, room_d, size)
            print(f"  join {size} {tag}: {res}", flush=True)
            out[f"join{size}_{tag}_s"] = res["s"]
            out[f"join{size}_{tag}_full_s"] = res["full_s"]
    return out


# --------------------------------------------------------------------------- send latency


async def bench_send_latency(sender: Node, receiver: Node, samples: int, tag: str) -> dict[str, float]:
    tok_s = await fresh_user(sender, "lsend")
    tok_r = await fresh_user(receiver, "lrecv")
    async with client(sender.base_url) as hs, client(receiver.base_url) as hr:
        room_id = await create_room(hs, tok_s)
        await join(hr, tok_r, room_id, sender.server_name)
        recv = await Receiver(hr, tok_r, room_id).start()
        try:
            latencies = []
            for n in range(samples + 3):
                body = f"lat {n}"
                t = time.perf_counter()
                await send(hs, tok_s, room_id, body)
                arrived = await recv.wait(body)
                if n >= 3:  # the first ones warm connections and key caches
                    latencies.append((arrived - t) * 1000)
                await asyncio.sleep(0.05)
        finally:
            await recv.stop()
    latencies.sort()
    return {f"send_{tag}_p50_ms": percentile(latencies, 50), f"send_{tag}_p95_ms": percentile(latencies, 95),
            f"send_{tag}_p99_ms": percentile(latencies, 99)}  # fmt: skip


async def bench_send(nodes: dict[str, Node], samples: int) -> dict[str, float]:
    d1, d2, s1, s2 = nodes["D1"], nodes["D2"], nodes.get("S1"), nodes.get("S2")
    pairs = [("D->D", d1, d2)]
    if s1 is not None and s2 is not None:
        pairs += [("S->S", s1, s2), ("D->S", d1, s1), ("S->D", s1, d1)]
    out: dict[str, float] = {}
    for tag, sender, receiver in pairs:
        res = await bench_send_latency(sender, receiver, samples, tag)
        print(f"  send {tag}: {fmt(res)}", flush=True)
        out.update(res)
    return out


# --------------------------------------------------------------------------- drain after an outage


async def messages_bodies(
    http: httpx.AsyncClient, token: str, room_id: str, prefix: str, limit: int
) -> list[str]:
    """The room's message bodies with ``prefix`` as the user's ``/messages`` gives them, oldest first."""
    params = {"dir": "b", "limit": limit, "filter": json.dumps({"types": ["m.room.message"]})}
    bodies: list[str] = []
    r = await http.get(f"{CS}/rooms/{q(room_id)}/messages", params=params, headers=auth(token))
    r.raise_for_status()
    for event in r.json().get("chunk", []):
        body = event.get("content", {}).get("body")
        if isinstance(body, str) and body.startswith(prefix):
            bodies.append(body)
    return list(reversed(bodies))


async def bench_drain(sender: Node, receiver: Node, total: int, rooms: int, tag: str) -> dict[str, float]:
    per_room = total // rooms
    tok_s = await fresh_user(sender, "dsend")
    tok_r = await fresh_user(receiver, "drecv")
    async with client(sender.base_url) as hs:
        room_ids = list(await asyncio.gather(*(create_room(hs, tok_s) for _ in range(rooms))))
    async with client(receiver.base_url) as hr:
        for room_id in room_ids:
            await join(hr, tok_r, room_id, sender.server_name)
    async with client(sender.base_url) as hs:
        for room_id in room_ids:
            await send(hs, tok_s, room_id, "before")
    wait_until(lambda: all(b == ["before"] for b in receiver.message_bodies(room_ids).values()),
               f"the first messages on {receiver.label}", 60)  # fmt: skip
    await asyncio.to_thread(receiver.stop)
    expected = {room_id: [f"d{i}-{k}" for k in range(per_room)] for i, room_id in enumerate(room_ids)}
    async with client(sender.base_url) as hs:

        async def fill(room_id: str) -> None:
            for body in expected[room_id]:
                await send(hs, tok_s, room_id, body)

        t = time.perf_counter()
        await asyncio.gather(*(fill(r) for r in room_ids))
        queue_s = time.perf_counter() - t
    if sender.kind == "dagma":
        wait_until(lambda: sender.outbox_pending(receiver.server_name) >= total, "the queued PDUs", 60)
    await asyncio.to_thread(receiver.start)
    done: dict[str, float] = {}
    async with client(receiver.base_url) as hr:
        t0 = time.perf_counter()
        await send(hr, tok_r, room_ids[0], "wake")  # the peer is back: it talks to the sender
        deadline = time.monotonic() + 600
        last_read = 0.0
        while len(done) < rooms and time.monotonic() < deadline:
            stored = receiver.message_counts(room_ids, "d")
            now = time.perf_counter()
            for room_id in room_ids:
                if room_id not in done and stored[room_id] >= per_room:
                    done[room_id] = now - t0
            if now - last_read > 2.0:  # a reader scrolling the rooms that still miss messages
                last_read = now
                for room_id in room_ids:
                    if room_id not in done:
                        await messages_bodies(hr, tok_r, room_id, "d", per_room + 10)
            await asyncio.sleep(0.2)
        in_order = 0
        for i, room_id in enumerate(room_ids):
            got = await messages_bodies(hr, tok_r, room_id, f"d{i}-", per_room + 10)
            in_order += got == expected[room_id]
    drain_s = max(done.values()) if len(done) == rooms else float("nan")
    arrived = sum(
        len({b for b in bodies if b.startswith("d")}) for bodies in receiver.message_bodies(room_ids).values()
    )
    res = {f"drain_{tag}_s": drain_s, f"drain_{tag}_eps": total / drain_s if drain_s == drain_s else 0.0,
           f"drain_{tag}_arrived": float(arrived), f"drain_{tag}_rooms_in_order": float(in_order),
           f"drain_{tag}_queue_s": queue_s}  # fmt: skip
    print(f"  drain {tag}: {fmt(res)}", flush=True)
    return res


async def bench_drains(nodes: dict[str, Node], total: int) -> dict[str, float]:
    d1, d2, s1, s2 = nodes["D1"], nodes["D2"], nodes.get("S1"), nodes.get("S2")
    out: dict[str, float] = {}
    out.update(await bench_drain(d1, d2, total, 10, "D->D"))
    if s1 is not None and s2 is not None:
        out.update(await bench_drain(d1, s2, total, 10, "D->S"))
        out.update(await bench_drain(s1, s2, total, 10, "S->S"))
    return out


# --------------------------------------------------------------------------- inbound transactions


def signing_key_of(node: Node) -> signing.SigningKey:
    config = yaml.safe_load(node.server.config_path.read_text())
    return signing.read_signing_keys(Path(config["signing_key_path"]).read_text())[0]


async def prepare_inbound(
    origin: Node, receiver: Node, total: int, rooms: int
) -> tuple[list[str], list[list[dict[str, Any]]]]:
    """``total`` messages over ``rooms`` rooms of ``origin`` that ``receiver`` joined, left in
    ``origin``'s outbox (it has no worker): returns the rooms and the transactions to replay."""
    tok_o = await fresh_user(origin, "origin")
    tok_r = await fresh_user(receiver, "inrecv")
    async with client(origin.base_url) as ho, client(receiver.base_url) as hr:
        room_ids = [await create_room(ho, tok_o) for _ in range(rooms)]
        for room_id in room_ids:
            await join(hr, tok_r, room_id, origin.server_name)
        for k in range(total // rooms):  # round robin, as busy rooms interleave
            await asyncio.gather(
                *(send(ho, tok_o, room_id, f"in{i}-{k}") for i, room_id in enumerate(room_ids))
            )
    rows = origin.query(
        "SELECT e.json FROM federation_outbox o JOIN events e ON e.id = o.event_id "
        "WHERE o.destination = %s AND o.dead_letter IS NULL ORDER BY o.id",
        (receiver.server_name,),
    )
    pdus = []
    for (raw,) in rows:
        pdu = json.loads(raw)
        pdu.pop("unsigned", None)
        pdus.append(pdu)
    txns = [pdus[i : i + 50] for i in range(0, len(pdus), 50)]
    return room_ids, txns


async def replay(
    origin: Node, receiver: Node, key: signing.SigningKey, txns: list[list[dict[str, Any]]]
) -> list[float]:
    """PUT each transaction to the receiver, one at a time; the latency of each (ms)."""
    times = []
    async with https_client(receiver.ca) as http:
        for pdus in txns:
            path = f"/_matrix/federation/v1/send/bench{secrets.token_hex(6)}"
            body = {"origin": origin.server_name, "origin_server_ts": int(time.time() * 1000), "pdus": pdus,
                    "edus": []}  # fmt: skip
            header = authorization_header(method="PUT", uri=path, origin=origin.server_name,
                                          destination=receiver.server_name, signing_key=key, content=body)  # fmt: skip
            t = time.perf_counter()
            r = await http.put(receiver.federation_url + path, content=encode_canonical_json(body),
                               headers={"Authorization": header, "Content-Type": "application/json"})  # fmt: skip
            times.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                raise RuntimeError(f"{receiver.label} answered {r.status_code}: {r.text[:500]}")
            errors = [v for v in r.json().get("pdus", {}).values() if isinstance(v, dict) and v.get("error")]
            if errors:
                print(f"  {receiver.label}: {len(errors)} PDU errors, e.g. {errors[0]}", flush=True)
    return times


async def local_sends(
    node: Node, tok: str, room_id: str, stop: asyncio.Event | None, count: int
) -> list[float]:
    """Sequential local sends (ms each): ``count`` of them, or until ``stop`` is set."""
    times = []
    async with client(node.base_url) as http:
        n = 0
        while (stop is None and n < count) or (stop is not None and not stop.is_set()):
            t = time.perf_counter()
            await send(http, tok, room_id, f"local {n}")
            times.append((time.perf_counter() - t) * 1000)
            n += 1
            await asyncio.sleep(0.02)
    return sorted(times)


async def replay_and_wait(
    origin: Node,
    receiver: Node,
    key: signing.SigningKey,
    txns: list[list[dict[str, Any]]],
    room_ids: list[str],
    target: int,
) -> tuple[list[float], float, float]:
    """Replay ``txns``; (``/send`` latencies, seconds until answered, until ``target`` messages stored)."""
    t0 = time.perf_counter()
    put_ms = await replay(origin, receiver, key, txns)
    answered_s = time.perf_counter() - t0
    await asyncio.to_thread(wait_until, lambda: receiver.message_count(room_ids) >= target,
                            f"the replayed messages on {receiver.label}", 600, 0.05)  # fmt: skip
    return sorted(put_ms), answered_s, time.perf_counter() - t0


async def bench_inbound_one(origin: Node, receiver: Node, total: int, tag: str) -> dict[str, float]:
    """The first half of the transactions alone (throughput, ``/send`` latency, CPU per PDU);
    the second half while a local user sends into a local room (its ``/send`` p50, "busy")."""
    room_ids, txns = await prepare_inbound(origin, receiver, total, 10)
    key = signing_key_of(origin)
    half = len(txns) // 2
    first, second = txns[:half], txns[half:]

    def messages(part: list[list[dict[str, Any]]]) -> int:
        return sum(1 for t in part for p in t if p.get("type") == "m.room.message")

    pdus = sum(len(t) for t in first)
    users = await ensure_users(receiver, 2)
    async with client(receiver.base_url) as http:
        local_room = await create_room(http, users[0][1])
        await join(http, users[1][1], local_room)
    idle = await local_sends(receiver, users[0][1], local_room, None, 40)
    already = receiver.message_count(room_ids)
    procs = receiver.processes()
    spy = start_py_spy(receiver, f"inbound-{tag}")
    meter = CpuMeter(procs).start()
    put_ms, answered_s, all_s = await replay_and_wait(
        origin, receiver, key, first, room_ids, already + messages(first)
    )
    cpu = meter.stop()
    procs.close()
    stop_py_spy(spy)
    stop = asyncio.Event()
    busy_task = asyncio.create_task(local_sends(receiver, users[0][1], local_room, stop, 0))
    await replay_and_wait(
        origin, receiver, key, second, room_ids, already + messages(first) + messages(second)
    )
    stop.set()
    busy = await busy_task
    res = {f"inbound_{tag}_eps": pdus / all_s, f"inbound_{tag}_send_p50_ms": percentile(put_ms, 50),
           f"inbound_{tag}_send_p95_ms": percentile(put_ms, 95), f"inbound_{tag}_answered_s": answered_s,
           f"inbound_{tag}_stored_s": all_s, f"inbound_{tag}_cpu_per_pdu_ms": cpu["total"] * 1000 / pdus,
           f"inbound_{tag}_cpu_db_share": cpu["db"] / max(cpu["total"], 1e-9),
           f"local_send_idle_{tag}_p50_ms": percentile(idle, 50),
           f"local_send_busy_{tag}_p50_ms": percentile(busy, 50),
           f"local_send_busy_{tag}_p95_ms": percentile(busy, 95)}  # fmt: skip
    print(f"  inbound {tag} ({len(first)} + {len(second)} transactions, {pdus} PDUs measured): {fmt(res)}",
          flush=True)  # fmt: skip
    return res


async def bench_inbound(nodes: dict[str, Node], origin: Node, total: int, round_no: int) -> dict[str, float]:
    receivers = [("D", nodes["D1"])] + ([("S", nodes["S1"])] if "S1" in nodes else [])
    if round_no % 2:
        receivers.reverse()
    out: dict[str, float] = {}
    for tag, receiver in receivers:
        out.update(await bench_inbound_one(origin, receiver, total, tag))
    return out


#: ``--py-spy PREFIX``: py-spy records the Dagma receiver of the inbound replay, and a Dagma joiner.
PROFILE: dict[str, str] = {}


def start_py_spy(node: Node, name: str) -> tuple[subprocess.Popen[bytes], Path] | None:
    if not PROFILE or node.kind != "dagma" or node.server.proc is None:
        return None
    out = Path(f"{PROFILE['prefix']}-{name}.txt")
    command = [PROFILE["py_spy"], "record", "--pid", str(node.server.proc.pid), "--rate", "100", "--function",
               "--nonblocking", "--format", "raw", "--output", str(out)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL), out


def stop_py_spy(spy: tuple[subprocess.Popen[bytes], Path] | None) -> None:
    if spy is None:
        return
    proc, out = spy
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    from bench.profile_server import FLAMEGRAPH

    top = out.with_suffix(".top.txt")
    subprocess.run([sys.executable, "-c", FLAMEGRAPH, str(out), str(top)], check=True)
    print(f"  profile: {out}, summary {top}", flush=True)


# --------------------------------------------------------------------------- Embassy stopped


async def room_with_locals_and_peer(
    node: Node, peer: Node
) -> tuple[str, str, list[Receiver], httpx.AsyncClient]:
    users = await ensure_users(node, 3)
    tok_p = await fresh_user(peer, "peer")
    http = client(node.base_url)
    room_id = await create_room(http, users[0][1])
    for _, tok in users[1:]:
        await join(http, tok, room_id)
    async with client(peer.base_url) as hp:
        await join(hp, tok_p, room_id, node.server_name)
    receivers = [await Receiver(http, tok, room_id).start() for _, tok in users[1:]]
    return room_id, users[0][1], receivers, http


async def bench_embassy_stopped(
    d3: Node, d2: Node, s1: Node | None, s2: Node | None, count: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    room_id, tok, receivers, http = await room_with_locals_and_peer(d3, d2)
    try:
        up = await local_sends(d3, tok, room_id, None, count)
        await asyncio.to_thread(lambda: [p.stop() for p in d3.extra])
        t = time.perf_counter()
        stopped = []
        bodies = [f"while stopped {n}" for n in range(count)]
        for body in bodies:
            t1 = time.perf_counter()
            await send(http, tok, room_id, body)
            stopped.append((time.perf_counter() - t1) * 1000)
            await asyncio.sleep(0.02)
        stopped.sort()
        queued = d3.outbox_pending(d2.server_name)
        t = time.perf_counter()
        for proc in d3.extra:
            proc.start()

        def arrived() -> bool:
            return d2.message_counts([room_id], "while stopped")[room_id] >= count

        await asyncio.to_thread(wait_until, arrived, "the backlog on D2", 600, 0.1)
        drain_s = time.perf_counter() - t
        got = [b for b in d2.message_bodies([room_id])[room_id] if b.startswith("while stopped")]
    finally:
        for r in receivers:
            await r.stop()
        await http.aclose()
    out.update({"local_send_embassy_up_D_p50_ms": percentile(up, 50),
                "local_send_embassy_stopped_D_p50_ms": percentile(stopped, 50),
                "local_send_embassy_stopped_D_p95_ms": percentile(stopped, 95),
                "embassy_restart_drain_D_s": drain_s, "embassy_restart_drain_D_queued": float(queued),
                "embassy_restart_drain_D_in_order": float(got == bodies)})  # fmt: skip
    if s1 is not None and s2 is not None:
        room_id, tok, receivers, http = await room_with_locals_and_peer(s1, s2)
        try:
            live = await local_sends(s1, tok, room_id, None, count)
        finally:
            for r in receivers:
                await r.stop()
            await http.aclose()
        out["local_send_peer_live_S_p50_ms"] = percentile(live, 50)
        out["local_send_peer_live_S_p95_ms"] = percentile(live, 95)
    print(f"  embassy stopped: {fmt(out)}", flush=True)
    return out


# --------------------------------------------------------------------------- E2EE keys


async def register_device(http: httpx.AsyncClient, prefix: str) -> tuple[str, str, str]:
    """A new user: (user ID, access token, device ID)."""
    body: dict[str, Any] = {"username": f"{prefix}{secrets.token_hex(4)}", "password": PASSWORD,
                            "auth": {"type": "m.login.dummy"}}  # fmt: skip
    r = await http.post(CS + "/register", json=body)
    if r.status_code == 401:  # servers that want the UIA round trip first
        body["auth"]["session"] = r.json()["session"]
        r = await http.post(CS + "/register", json=body)
    r.raise_for_status()
    data = r.json()
    return data["user_id"], data["access_token"], data["device_id"]


PASSWORD = "bench-password-123"


async def upload_device_keys(http: httpx.AsyncClient, user_id: str, token: str, device_id: str) -> None:
    """Signed device keys and a few one-time keys, as a client uploads them (tests/support/e2e_keys.py)."""
    keys = DeviceKeys(user_id, device_id)
    body = {"device_keys": keys.device_keys(), "one_time_keys": keys.one_time_keys(5)}
    r = await http.post(CS + "/keys/upload", json=body, headers=auth(token))
    if r.status_code != 200:
        raise RuntimeError(f"keys/upload for {user_id}: {r.status_code} {r.text[:300]}")


async def wait_full_membership(
    node: Node, http: httpx.AsyncClient, token: str, room_id: str, count: int
) -> None:
    """Until ``node``'s view of the room lists ``count`` members (and, on Synapse, the partial
    state of a faster join is completed: until then it does not track the members' devices)."""
    deadline = time.monotonic() + 600
    while True:
        r = await http.get(f"{CS}/rooms/{q(room_id)}/joined_members", headers=auth(token))
        full = r.status_code == 200 and len(r.json().get("joined", {})) >= count
        if full and node.kind == "synapse":
            full = not node.query("SELECT 1 FROM partial_state_rooms WHERE room_id = %s", (room_id,))
        if full:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{node.label} never saw {count} members of {room_id}")
        await asyncio.sleep(0.1)  # polling the joiner's view, with a deadline


async def keys_query(
    http: httpx.AsyncClient, token: str, users: list[str], timeout_ms: int = 30000
) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    r = await http.post(CS + "/keys/query", json={"device_keys": {u: [] for u in users}, "timeout": timeout_ms},
                        headers=auth(token))  # fmt: skip
    ms = (time.perf_counter() - t) * 1000
    if r.status_code != 200:
        raise RuntimeError(f"keys/query: {r.status_code} {r.text[:300]}")
    return ms, r.json()


def devices_answered(answer: dict[str, Any], users: list[str]) -> int:
    """How many of ``users`` the answer gives at least one device with keys for."""
    device_keys = answer.get("device_keys", {})
    return sum(1 for u in users if device_keys.get(u))


async def bench_keys_one(
    asker: Node, owner: Node, count: int, warm_samples: int, tag: str
) -> dict[str, float]:
    """``count`` users of ``owner`` with device keys in a room of ``owner`` that a user of
    ``asker`` joined; the asker's ``/keys/query`` for all of them, first (its server asks the
    owner over federation) and then again (answered from what its server tracks); then one
    owner user adds a device: until the asker's query lists it (the device-list EDU)."""
    async with client(owner.base_url) as ho, client(asker.base_url) as ha:
        owners = await gather_limited([lambda: register_device(ho, "ko") for _ in range(count)])
        await gather_limited([lambda u=u: upload_device_keys(ho, *u) for u in owners])
        room_id = await create_room(ho, owners[0][1])
        await gather_limited([lambda tok=tok: join(ho, tok, room_id) for _, tok, _ in owners[1:]])
        _, tok_a, _ = await register_device(ha, "ka")
        await join(ha, tok_a, room_id, owner.server_name)
        await wait_full_membership(asker, ha, tok_a, room_id, count + 1)
        users = [u for u, _, _ in owners]
        cold_ms, answer = await keys_query(ha, tok_a, users)
        cold_found = devices_answered(answer, users)
        failures = answer.get("failures", {})
        if cold_found < count or failures:
            print(
                f"  keys {tag}: cold query answered {cold_found}/{count} users, failures {failures}",
                flush=True,
            )
        warm = []
        warm_found = count
        for _ in range(warm_samples):
            ms, answer = await keys_query(ha, tok_a, users)
            warm.append(ms)
            warm_found = min(warm_found, devices_answered(answer, users))
        warm.sort()
        # Freshness: a second device for one owner user; until the asker's server lists it.
        user_id = users[0]
        r = await ho.post(CS + "/login", json={"type": "m.login.password", "password": PASSWORD,
                                               "identifier": {"type": "m.id.user", "user": user_id}})  # fmt: skip
        r.raise_for_status()
        tok_new, device_new = r.json()["access_token"], r.json()["device_id"]
        t = time.perf_counter()
        await upload_device_keys(ho, user_id, tok_new, device_new)
        deadline = time.monotonic() + 60
        update_ms = float("nan")
        while time.monotonic() < deadline:
            _, answer = await keys_query(ha, tok_a, [user_id])
            if device_new in answer.get("device_keys", {}).get(user_id, {}):
                update_ms = (time.perf_counter() - t) * 1000
                break
            await asyncio.sleep(0.05)  # polling the asker's view, with a deadline
    res = {f"keys_{tag}_cold_ms": cold_ms, f"keys_{tag}_cold_found": float(cold_found),
           f"keys_{tag}_warm_p50_ms": percentile(warm, 50), f"keys_{tag}_warm_p95_ms": percentile(warm, 95),
           f"keys_{tag}_warm_found": float(warm_found), f"keys_{tag}_new_device_ms": update_ms}  # fmt: skip
    print(f"  keys {tag}: {fmt(res)}", flush=True)
    return res


async def bench_keys(nodes: dict[str, Node], count: int, warm_samples: int) -> dict[str, float]:
    d1, d2, s1, s2 = nodes["D1"], nodes["D2"], nodes.get("S1"), nodes.get("S2")
    pairs = [("D->D", d1, d2)]
    if s1 is not None and s2 is not None:
        pairs += [("S->S", s1, s2), ("D->S", d1, s1)]
    out: dict[str, float] = {}
    for tag, asker, owner in pairs:
        out.update(await bench_keys_one(asker, owner, count, warm_samples, tag))
    return out


# --------------------------------------------------------------------------- to-device


class ToDeviceReceiver:
    """A device long-polling ``/sync`` (rooms filtered out); records when each to-device
    message (by its ``content.n``) arrived."""

    FILTER = json.dumps({"room": {"rooms": []}, "presence": {"types": []}, "account_data": {"types": []}},
                        separators=(",", ":"))  # fmt: skip

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.token = token
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Event] = {}
        self.task: asyncio.Task[None] | None = None
        self.since = ""

    async def start(self) -> ToDeviceReceiver:
        r = await self.http.get(
            CS + "/sync", params={"timeout": 0, "filter": self.FILTER}, headers=auth(self.token)
        )
        r.raise_for_status()
        self.since = r.json()["next_batch"]
        self.task = asyncio.create_task(self._loop())
        return self

    async def _loop(self) -> None:
        while True:
            params = {"timeout": 30000, "since": self.since, "filter": self.FILTER}
            r = await self.http.get(CS + "/sync", params=params, headers=auth(self.token))
            now = time.perf_counter()
            r.raise_for_status()
            data = r.json()
            self.since = data["next_batch"]
            for event in data.get("to_device", {}).get("events", []):
                n = event.get("content", {}).get("n")
                if isinstance(n, str) and n not in self.arrived:
                    self.arrived[n] = now
                    waiter = self.waiters.get(n)
                    if waiter is not None:
                        waiter.set()

    async def wait(self, n: str, timeout: float = 60) -> float:
        if n not in self.arrived:
            event = self.waiters.setdefault(n, asyncio.Event())
            await asyncio.wait_for(event.wait(), timeout)
        return self.arrived[n]

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def bench_todevice_one(sender: Node, receiver: Node, samples: int, tag: str) -> dict[str, float]:
    """``PUT /sendToDevice`` to one device of a user of ``receiver``, one message at a time:
    latency from the ``PUT`` being sent to the receiver's ``/sync`` long-poll holding the
    message (ms). Sender and receiver share a room, as E2EE peers do."""
    async with client(sender.base_url) as hs, client(receiver.base_url) as hr:
        _, tok_s, _ = await register_device(hs, "tdsend")
        user_r, tok_r, device_r = await register_device(hr, "tdrecv")
        room_id = await create_room(hs, tok_s)
        await join(hr, tok_r, room_id, sender.server_name)
        recv = await ToDeviceReceiver(hr, tok_r).start()
        latencies = []
        lost = 0
        try:
            for k in range(samples + 3):
                n = f"td{k}-{secrets.token_hex(4)}"
                body = {"messages": {user_r: {device_r: {"n": n}}}}
                t = time.perf_counter()
                r = await hs.put(f"{CS}/sendToDevice/m.dagma.bench/{secrets.token_hex(8)}", json=body,
                                 headers=auth(tok_s))  # fmt: skip
                r.raise_for_status()
                try:
                    arrived = await recv.wait(n)
                except TimeoutError:
                    lost += 1
                    continue
                if k >= 3:  # the first ones warm connections and key caches
                    latencies.append((arrived - t) * 1000)
                await asyncio.sleep(0.05)
        finally:
            await recv.stop()
    latencies.sort()
    res = {f"todevice_{tag}_p50_ms": percentile(latencies, 50), f"todevice_{tag}_p95_ms": percentile(latencies, 95),
           f"todevice_{tag}_lost": float(lost)}  # fmt: skip
    print(f"  todevice {tag}: {fmt(res)}", flush=True)
    return res


async def bench_todevice(nodes: dict[str, Node], samples: int) -> dict[str, float]:
    d1, d2, s1, s2 = nodes["D1"], nodes["D2"], nodes.get("S1"), nodes.get("S2")
    pairs = [("D->D", d1, d2)]
    if s1 is not None and s2 is not None:
        pairs += [("S->S", s1, s2), ("D->S", d1, s1), ("S->D", s1, d1)]
    out: dict[str, float] = {}
    for tag, sender, receiver in pairs:
        out.update(await bench_todevice_one(sender, receiver, samples, tag))
    return out


# --------------------------------------------------------------------------- remote media


async def bench_media_one(fetcher: Node, owner: Node, files: int, repeats: int, tag: str) -> dict[str, float]:
    """``files`` uploads of 1 MiB on ``owner``; a user of ``fetcher`` downloads each through
    ``GET /_matrix/client/v1/media/download/{owner}/{id}``: the first time (its server fetches
    it over federation), then ``repeats`` times more (from its cache). Bodies are checked."""
    first: list[float] = []
    cached: list[float] = []
    async with client(owner.base_url) as ho, client(fetcher.base_url) as hf:
        tok_o = await fresh_user(owner, "mo")
        tok_f = await fresh_user(fetcher, "mf")
        for _ in range(files):
            data = secrets.token_bytes(1 << 20)
            r = await ho.post("/_matrix/media/v3/upload", params={"filename": "bench.bin"}, content=data,
                              headers={**auth(tok_o), "Content-Type": "application/octet-stream"})  # fmt: skip
            if r.status_code != 200:
                raise RuntimeError(f"upload on {owner.label}: {r.status_code} {r.text[:300]}")
            server, media_id = r.json()["content_uri"].removeprefix("mxc://").split("/", 1)
            url = f"/_matrix/client/v1/media/download/{q(server)}/{q(media_id)}"
            for k in range(repeats + 1):
                t = time.perf_counter()
                r = await hf.get(url, headers=auth(tok_f))
                ms = (time.perf_counter() - t) * 1000
                if r.status_code != 200 or r.content != data:
                    raise RuntimeError(f"{fetcher.label} fetching {server}/{media_id} ({'first' if not k else 'cached'}): "
                                       f"{r.status_code}, {len(r.content)} bytes, {r.text[:200] if r.status_code != 200 else ''}")  # fmt: skip
                (cached if k else first).append(ms)
    first.sort()
    cached.sort()
    res = {f"media_{tag}_first_p50_ms": percentile(first, 50), f"media_{tag}_first_max_ms": first[-1],
           f"media_{tag}_cached_p50_ms": percentile(cached, 50), f"media_{tag}_cached_p95_ms": percentile(cached, 95)}  # fmt: skip
    print(f"  media {tag}: {fmt(res)}", flush=True)
    return res


async def bench_media(nodes: dict[str, Node], files: int, repeats: int) -> dict[str, float]:
    d1, d2, s1, s2 = nodes["D1"], nodes["D2"], nodes.get("S1"), nodes.get("S2")
    pairs = [("D->D", d1, d2)]
    if s1 is not None and s2 is not None:
        pairs += [("S->S", s1, s2), ("D->S", d1, s1)]
    out: dict[str, float] = {}
    for tag, fetcher, owner in pairs:
        out.update(await bench_media_one(fetcher, owner, files, repeats, tag))
    return out


# --------------------------------------------------------------------------- report


def fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in values.items())


@dataclass
class Row:
    name: str
    ours: str  # metric keys
    theirs: str
    higher_is_better: bool = False


def comparison_rows(sizes: list[int]) -> list[Row]:
    rows = []
    for size in sizes:
        rows += [
            Row(f"join {size}: D->S vs S->S (s)", f"join{size}_D->S_s", f"join{size}_S->S_s"),
            Row(f"join {size}: D->S vs S->S, full state (s)", f"join{size}_D->S_full_s", f"join{size}_S->S_full_s"),
            Row(f"join {size}: S->D vs S->S (s)", f"join{size}_S->D_s", f"join{size}_S->S_s"),
            Row(f"join {size}: S->D vs S->S, full state (s)", f"join{size}_S->D_full_s", f"join{size}_S->S_full_s"),
            Row(f"join {size}: D->D vs S->S, full state (s)", f"join{size}_D->D_full_s", f"join{size}_S->S_full_s"),
        ]  # fmt: skip
    for tag in ("D->D", "D->S", "S->D"):
        for p in (50, 95, 99):
            rows.append(Row(f"send {tag} vs S->S p{p} (ms)", f"send_{tag}_p{p}_ms", f"send_S->S_p{p}_ms"))
    rows += [
        Row("drain D->S vs S->S (s)", "drain_D->S_s", "drain_S->S_s"),
        Row("drain D->S vs S->S (PDUs/s)", "drain_D->S_eps", "drain_S->S_eps", True),
        Row("drain D->D vs S->S (s)", "drain_D->D_s", "drain_S->S_s"),
        Row("drain rooms in order, D->S vs S->S", "drain_D->S_rooms_in_order", "drain_S->S_rooms_in_order", True),
        Row("inbound 50-PDU txns (PDUs/s)", "inbound_D_eps", "inbound_S_eps", True),
        Row("inbound /send p50 (ms)", "inbound_D_send_p50_ms", "inbound_S_send_p50_ms"),
        Row("inbound /send p95 (ms)", "inbound_D_send_p95_ms", "inbound_S_send_p95_ms"),
        Row("inbound server+DB CPU per PDU (ms)", "inbound_D_cpu_per_pdu_ms", "inbound_S_cpu_per_pdu_ms"),
        Row("local /send p50 idle (ms)", "local_send_idle_D_p50_ms", "local_send_idle_S_p50_ms"),
        Row("local /send p50, federation busy (ms)", "local_send_busy_D_p50_ms", "local_send_busy_S_p50_ms"),
        Row("local /send p50, Embassy stopped vs S peer live", "local_send_embassy_stopped_D_p50_ms",
            "local_send_peer_live_S_p50_ms"),
        Row("local /send p50, Embassy up vs S peer live", "local_send_embassy_up_D_p50_ms",
            "local_send_peer_live_S_p50_ms"),
    ]  # fmt: skip
    for tag in ("D->S", "D->D"):
        rows += [
            Row(f"keys/query 100 remote users cold {tag} vs S->S (ms)", f"keys_{tag}_cold_ms", "keys_S->S_cold_ms"),
            Row(f"keys/query 100 remote users warm p50 {tag} vs S->S (ms)", f"keys_{tag}_warm_p50_ms",
                "keys_S->S_warm_p50_ms"),
            Row(f"keys/query warm p95 {tag} vs S->S (ms)", f"keys_{tag}_warm_p95_ms", "keys_S->S_warm_p95_ms"),
            Row(f"keys new remote device seen {tag} vs S->S (ms)", f"keys_{tag}_new_device_ms",
                "keys_S->S_new_device_ms"),
        ]  # fmt: skip
    for tag in ("D->S", "S->D", "D->D"):
        for p in (50, 95):
            rows.append(
                Row(f"to-device {tag} vs S->S p{p} (ms)", f"todevice_{tag}_p{p}_ms", f"todevice_S->S_p{p}_ms")
            )
    for tag in ("D->S", "D->D"):
        rows += [
            Row(f"remote media 1 MiB first fetch p50 {tag} vs S->S (ms)", f"media_{tag}_first_p50_ms",
                "media_S->S_first_p50_ms"),
            Row(f"remote media 1 MiB cached p50 {tag} vs S->S (ms)", f"media_{tag}_cached_p50_ms",
                "media_S->S_cached_p50_ms"),
            Row(f"remote media 1 MiB cached p95 {tag} vs S->S (ms)", f"media_{tag}_cached_p95_ms",
                "media_S->S_cached_p95_ms"),
        ]  # fmt: skip
    return rows


def print_round(results: dict[str, float], sizes: list[int], title: str) -> None:
    print(f"\n== {title}")
    print(f"{'':58} {'dagma':>10} {'synapse':>10} {'ratio':>8}")
    for row in comparison_rows(sizes):
        if row.ours not in results:
            continue
        ours = results[row.ours]
        theirs = results.get(row.theirs)
        line = f"{row.name:58} {ours:10.3g}"
        if theirs is not None and ours == ours and theirs == theirs and ours and theirs:
            ratio = ours / theirs if row.higher_is_better else theirs / ours
            line += f" {theirs:10.3g} {ratio:7.2f}x {'met' if ratio >= 1 else 'MISSED'}"
        elif theirs is not None:
            line += f" {theirs:10.3g}"
        print(line)
    print("ratio > 1: Dagma better (met: at least as good as Synapse, the issue's goal)")
    for key in (f"join1000_{t}_full_s" for t in ("D->S", "S->D")):
        if key in results:
            print(
                f"  [{'met' if results[key] < 10 else 'MISSED'}] 1,000-member join under 10 s: {key} = {results[key]:.2f}"
            )
    others = {
        k: v
        for k, v in sorted(results.items())
        if not any(k in (r.ours, r.theirs) for r in comparison_rows(sizes))
    }
    if others:
        print("other figures: " + fmt(others))


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--with-synapse", action="store_true", help="compare with Synapse (S1, S2)")
    parser.add_argument(
        "--quick", action="store_true", help="rooms of 10/100 members, 200 messages; fewer samples"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}"
    )
    parser.add_argument("--py-spy", metavar="PREFIX", help="profile Dagma with py-spy as the receiver of the inbound "
                        "replay and as a joiner (PY_SPY=path, else py-spy on PATH): PREFIX-<what>.txt, .top.txt")  # fmt: skip
    parser.add_argument(
        "--sizes", help="room sizes of the join scenario, e.g. 1000 (default 10,100,1000; --quick 10,100)"
    )
    args = parser.parse_args()
    # SIGTERM (timeout, an impatient operator) tears the servers down like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.py_spy:
        PROFILE.update(
            prefix=args.py_spy, py_spy=os.environ.get("PY_SPY") or shutil.which("py-spy") or "py-spy"
        )
    scenarios = [s for s in args.scenarios.split(",") if s]
    if set(scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {sorted(set(scenarios) - set(SCENARIOS))}")
    sizes = (
        [int(n) for n in args.sizes.split(",")]
        if args.sizes
        else [10, 100]
        if args.quick
        else [10, 100, 1000]
    )
    history = 200 if args.quick else 1000
    samples = 30 if args.quick else 100
    drain_total = 200 if args.quick else 1000
    inbound_total = 500 if args.quick else 1000
    stopped_count = 30 if args.quick else 100
    print(f"machine: {os.cpu_count()} CPUs, load average before: {machine_load()}", flush=True)
    print(f"sizes {sizes}, {history} messages per join room, {samples} send samples, drain {drain_total} PDUs, "
          f"inbound {inbound_total} messages, {stopped_count} sends with the Embassy stopped", flush=True)  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="fedbench-"))
    ca = TestCA(root / "ca")
    nodes: dict[str, Node] = {}
    extra: list[Node] = []
    redis_before = redis_keys()
    try:
        venv = ensure_synapse() if args.with_synapse else None
        for label in ("D1", "D2"):
            nodes[label] = start_dagma(label, root, ca)
        if venv is not None:
            for label in ("S1", "S2"):
                nodes[label] = start_synapse(label, root, ca, venv)
        print("servers: " + ", ".join(f"{n.label}={n.server_name}" for n in nodes.values()), flush=True)
        for round_no in range(args.rounds):
            results: dict[str, float] = {}
            if "join" in scenarios:
                results.update(asyncio.run(bench_join(nodes, sizes, history, round_no)))
            if "send" in scenarios:
                results.update(asyncio.run(bench_send(nodes, samples)))
            if "drain" in scenarios:
                results.update(asyncio.run(bench_drains(nodes, drain_total)))
            if "inbound" in scenarios:
                origin = start_split_dagma("O", root / f"r{round_no}", ca, worker=False)
                extra.append(origin)
                results.update(asyncio.run(bench_inbound(nodes, origin, inbound_total, round_no)))
                destroy(origin)
            if "embassy_stopped" in scenarios:
                d3 = start_split_dagma("D3", root / f"r{round_no}", ca, worker=True)
                extra.append(d3)
                results.update(asyncio.run(bench_embassy_stopped(d3, nodes["D2"], nodes.get("S1"), nodes.get("S2"),
                                                                 stopped_count)))  # fmt: skip
                destroy(d3)
            if "keys" in scenarios:
                results.update(asyncio.run(bench_keys(nodes, 100, 10 if args.quick else 30)))
            if "todevice" in scenarios:
                results.update(asyncio.run(bench_todevice(nodes, 30)))
            if "media" in scenarios:
                results.update(asyncio.run(bench_media(nodes, 3 if args.quick else 5, 10)))
            print_round(results, sizes, f"round {round_no + 1} (load average now: {machine_load()})")
    finally:
        for node in [*extra, *nodes.values()]:
            try:
                destroy(node)
            except Exception as exc:  # keep tearing the others down
                print(f"destroying {node.label}: {exc}", file=sys.stderr)
        drop_redis_keys(redis_before)
    print(f"\nload average after: {machine_load()}")


def redis_keys() -> set[bytes]:
    import redis

    return set(redis.Redis.from_url(REDIS_URL).keys("dagma-*"))


def drop_redis_keys(before: set[bytes]) -> None:
    """The split-layout servers' task queues left in Redis (O has no worker): ours only."""
    import redis

    conn = redis.Redis.from_url(REDIS_URL)
    for key in set(conn.keys("dagma-*")) - before:
        conn.delete(key)


if __name__ == "__main__":
    main()

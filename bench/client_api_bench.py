"""Client-API benchmark over real HTTP: prints numbers (and ratios when comparing two servers).

    DAGMA_NO_BOOTSTRAP=1 .venv/bin/python bench/client_api_bench.py                 # starts Dagma itself
    DAGMA_NO_BOOTSTRAP=1 .venv/bin/python bench/client_api_bench.py --url http://127.0.0.1:8008
    DAGMA_NO_BOOTSTRAP=1 .venv/bin/python bench/client_api_bench.py --compare-url http://127.0.0.1:8448  # e.g. Synapse

Measures, with the standard client-server API only (so any homeserver can be measured):
  1. message send throughput with 8 concurrent senders (events/s)
  2. /sync wake-up latency p50/p95 for 20 long-polling receivers (ms, send -> response)
  3. initial sync of a user in 50 rooms (ms)
  4. /messages pagination of 1,000 events, 100 per page (ms for all pages)
  5. send into one room: 8 senders x 200 messages (events/s, server+DB CPU per message)
  6. sustained fan-out: 20 and 200 receivers long-polling one room with an inline filter while
     one sender sends 50 messages 100 ms apart: delivery latency p50/p95/p99 over every
     (receiver, message) pair, server+DB CPU per delivered /sync
  7. createRoom p50, a join storm of 100 users into one room
Server+DB CPU comes from /proc (the server's process tree and the PostgreSQL backends of its
database, bench/procstat.py); RSS of each server process is printed idle and after the scenarios.
With --with-synapse both servers run, measured alternately for --rounds rounds.
The target server must allow open registration (the self-started Dagma does).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procstat import CpuMeter, ServerProcesses  # noqa: E402 - after the path set-up

CS = "/_matrix/client/v3"

#: Called with True when a scenario's measured phase starts and False when it ends (set-up,
#: registration and joins left out): ``profile_server.py`` samples only in between.
MEASURE_HOOKS: list[Any] = []


#: What the self-started Dagma changes in the test server's configuration: no test hooks
#: (with them every reading of the clock looks at the test clock's file; production runs
#: without them, and the bench uses only the standard client API).
PRODUCTION_LIKE: dict[str, Any] = {"enable_test_hooks": False}


#: A virtualenv holding ``requirements.txt`` only, as ``python3 manage.py serve`` makes on a
#: production machine. The dev venv adds pytest, ruff, import-linter...; with ``rich``
#: installed (import-linter's), httpx loads its command-line module, and the server
#: carries ~4 MB that production does not.
PRODUCTION_VENV = Path.home() / ".cache" / "dagma" / "bench-production-venv"


def production_python() -> str:
    """The production venv's interpreter, made or brought up to date with ``requirements.txt``."""
    requirements = ROOT / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = PRODUCTION_VENV / ".requirements.sha256"
    python = PRODUCTION_VENV / "bin" / "python"
    if not (stamp.exists() and stamp.read_text() == digest and python.exists()):
        print(f"installing requirements.txt into {PRODUCTION_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PRODUCTION_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)], check=True)
        stamp.write_text(digest)
    return str(python)


def measuring(on: bool) -> None:
    for hook in MEASURE_HOOKS:
        hook(on)


def q(s: str) -> str:
    return quote(s, safe="")


async def register(http: httpx.AsyncClient, prefix: str) -> tuple[str, str]:
    body: dict[str, Any] = {
        "username": f"{prefix}{secrets.token_hex(4)}",
        "password": "bench-password-123",
        "auth": {"type": "m.login.dummy"},
    }
    r = await http.post(CS + "/register", json=body)
    if r.status_code == 401:  # servers that want the UIA round trip first
        body["auth"]["session"] = r.json()["session"]
        r = await http.post(CS + "/register", json=body)
    r.raise_for_status()
    return r.json()["user_id"], r.json()["access_token"]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_room(http: httpx.AsyncClient, token: str, **body: Any) -> str:
    r = await http.post(CS + "/createRoom", json=body, headers=auth(token))
    r.raise_for_status()
    return str(r.json()["room_id"])


async def send(http: httpx.AsyncClient, token: str, room_id: str, body: str) -> str:
    r = await http.put(f"{CS}/rooms/{q(room_id)}/send/m.room.message/{secrets.token_hex(8)}",
                       json={"msgtype": "m.text", "body": body}, headers=auth(token))  # fmt: skip
    r.raise_for_status()
    return str(r.json()["event_id"])


async def bench_send_throughput(base: str, senders: int = 8, per_sender: int = 50) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        users = [await register(http, "send") for _ in range(senders)]
        rooms = [await create_room(http, tok, preset="private_chat") for _, tok in users]

        async def worker(i: int) -> None:
            _, tok = users[i]
            for n in range(per_sender):
                await send(http, tok, rooms[i], f"m{n}")

        t = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(senders)))
        return senders * per_sender / (time.perf_counter() - t)


async def bench_sync_wakeup(base: str, receivers: int = 20, rounds: int = 10) -> tuple[float, float]:
    async with httpx.AsyncClient(
        base_url=base, timeout=120, limits=httpx.Limits(max_connections=100)
    ) as http:
        _, sender_tok = await register(http, "wsend")
        room = await create_room(http, sender_tok, preset="public_chat")
        recv = [await register(http, "wrecv") for _ in range(receivers)]
        for _, tok in recv:
            (await http.post(f"{CS}/join/{q(room)}", json={}, headers=auth(tok))).raise_for_status()
        tokens: list[str] = []
        for _, tok in recv:
            r = await http.get(CS + "/sync", params={"timeout": 0}, headers=auth(tok))
            tokens.append(r.json()["next_batch"])
        latencies: list[float] = []
        for n in range(rounds):
            sent_at: dict[str, float] = {}

            async def poll(i: int, n: int = n, sent_at: dict[str, float] = sent_at) -> None:
                tok = recv[i][1]
                while True:
                    r = await http.get(
                        CS + "/sync", params={"timeout": 30000, "since": tokens[i]}, headers=auth(tok)
                    )
                    data = r.json()
                    tokens[i] = data["next_batch"]
                    events = (
                        data.get("rooms", {})
                        .get("join", {})
                        .get(room, {})
                        .get("timeline", {})
                        .get("events", [])
                    )
                    if any(e.get("content", {}).get("body") == f"wake{n}" for e in events):
                        latencies.append((time.perf_counter() - sent_at["t"]) * 1000)
                        return

            tasks = [asyncio.create_task(poll(i)) for i in range(receivers)]
            await asyncio.sleep(0.5)  # let every receiver settle into its long-poll
            sent_at["t"] = time.perf_counter()
            await send(http, sender_tok, room, f"wake{n}")
            await asyncio.gather(*tasks)
        latencies.sort()
        return statistics.median(latencies), latencies[int(len(latencies) * 0.95) - 1]


async def bench_initial_sync(base: str, rooms: int = 50) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        _, tok = await register(http, "isync")
        for i in range(rooms):
            room = await create_room(http, tok, preset="private_chat", name=f"room {i}")
            await send(http, tok, room, "hello")
        times = []
        for i in range(5):
            # A different (equivalent) filter each time: Synapse answers repeated identical
            # syncs from a response cache, which would measure the cache, not the sync.
            sync_filter = json.dumps({"room": {"timeline": {"limit": 10 + i}}})
            t = time.perf_counter()
            r = await http.get(CS + "/sync", params={"timeout": 0, "filter": sync_filter}, headers=auth(tok))
            r.raise_for_status()
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)


async def bench_messages(base: str, events: int = 1000, page: int = 100) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        _, tok = await register(http, "msgs")
        room = await create_room(http, tok, preset="private_chat")
        await asyncio.gather(*(send(http, tok, room, f"h{i}") for i in range(events)))
        times = []
        for _ in range(3):
            t = time.perf_counter()
            token: str | None = None
            seen = 0
            while True:
                params: dict[str, Any] = {"dir": "b", "limit": page}
                if token:
                    params["from"] = token
                r = await http.get(f"{CS}/rooms/{q(room)}/messages", params=params, headers=auth(tok))
                r.raise_for_status()
                data = r.json()
                seen += len(data["chunk"])
                token = data.get("end")
                if not token or not data["chunk"]:
                    break
            times.append((time.perf_counter() - t) * 1000)
            assert seen >= events, seen
        return statistics.median(times)


async def bench_create_room(base: str, rooms: int = 20) -> float:
    """createRoom p50 (ms), one room at a time."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        _, tok = await register(http, "croom")
        times = []
        for i in range(rooms):
            t = time.perf_counter()
            await create_room(http, tok, preset="public_chat", name=f"bench {i}")
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)


async def bench_join_storm(base: str, users: int = 100) -> float:
    """Seconds for ``users`` (registered beforehand) to join one public room all at once."""
    async with httpx.AsyncClient(
        base_url=base, timeout=300, limits=httpx.Limits(max_connections=users + 10)
    ) as http:
        _, owner = await register(http, "storm")
        room = await create_room(http, owner, preset="public_chat")
        joiners = await register_many(http, "stormj", users)
        t = time.perf_counter()
        responses = await asyncio.gather(
            *(http.post(f"{CS}/join/{q(room)}", json={}, headers=auth(tok)) for _, tok in joiners)
        )
        for r in responses:
            r.raise_for_status()
        return time.perf_counter() - t


async def register_many(
    http: httpx.AsyncClient, prefix: str, n: int, at_once: int = 8
) -> list[tuple[str, str]]:
    slots = asyncio.Semaphore(at_once)

    async def one() -> tuple[str, str]:
        async with slots:
            return await register(http, prefix)

    return list(await asyncio.gather(*(one() for _ in range(n))))


def cpu_of(meter: CpuMeter | None) -> dict[str, float] | None:
    return meter.stop() if meter is not None else None


async def bench_send_one_room(
    base: str, procs: ServerProcesses | None, senders: int = 8, per_sender: int = 200
) -> dict[str, float]:
    """``senders`` clients sending ``per_sender`` messages each into one room, as fast as they can."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        users = await register_many(http, "send1", senders)
        room = await create_room(http, users[0][1], preset="public_chat")
        for _, tok in users[1:]:
            (await http.post(f"{CS}/join/{q(room)}", json={}, headers=auth(tok))).raise_for_status()

        async def worker(i: int) -> None:
            _, tok = users[i]
            for n in range(per_sender):
                await send(http, tok, room, f"m{n}")

        measuring(True)
        meter = CpuMeter(procs).start() if procs is not None else None
        t = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(senders)))
        elapsed = time.perf_counter() - t
        cpu = cpu_of(meter)
        measuring(False)
    total = senders * per_sender
    out = {"send_one_room_eps": total / elapsed}
    if cpu is not None:
        out["send_cpu_per_msg_ms"] = cpu["total"] * 1000 / total
    return out


#: The inline filter the sustained receivers send (many clients send one inline).
SUSTAINED_FILTER = json.dumps({"room": {"timeline": {"limit": 100}}}, separators=(",", ":"))


async def bench_sustained(
    base: str,
    procs: ServerProcesses | None,
    receivers: int,
    messages: int = 50,
    interval: float = 0.1,
) -> dict[str, float]:
    """``receivers`` long-polling one room while one sender sends ``messages`` every ``interval``.

    Latency is from the moment the sender's ``PUT`` returned to the moment a receiver's
    ``/sync`` response holding the message arrived, over every (receiver, message) pair
    (0 when the receiver had it before the sender's response came back).
    """
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=httpx.Limits(max_connections=32)) as http:
        _, sender_tok = await register(http, "ssend")
        room = await create_room(http, sender_tok, preset="public_chat")
        recv = await register_many(http, "srecv", receivers)
        slots = asyncio.Semaphore(8)

        async def join_and_sync(tok: str) -> str:
            async with slots:
                (await http.post(f"{CS}/join/{q(room)}", json={}, headers=auth(tok))).raise_for_status()
                r = await http.get(CS + "/sync", params={"timeout": 0, "filter": SUSTAINED_FILTER},
                                   headers=auth(tok))  # fmt: skip
                r.raise_for_status()
                return str(r.json()["next_batch"])

        tokens = list(await asyncio.gather(*(join_and_sync(tok) for _, tok in recv)))
        # Every receiver catches up with the joins before the measurement starts.
        tokens = list(
            await asyncio.gather(
                *(catch_up(http, tok, since) for (_, tok), since in zip(recv, tokens, strict=True))
            )
        )

    sent_at: dict[str, float] = {}
    got: list[dict[str, float]] = [{} for _ in recv]
    delivered = 0
    responses = 0
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(
        base, connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:

        async def receiver(i: int) -> None:
            nonlocal delivered, responses
            since = tokens[i]
            headers = auth(recv[i][1])
            while len(got[i]) < messages:
                params = {"since": since, "timeout": "30000", "filter": SUSTAINED_FILTER}
                async with session.get(CS + "/sync", params=params, headers=headers) as r:
                    r.raise_for_status()
                    data = await r.json()
                now = time.perf_counter()
                responses += 1
                since = data["next_batch"]
                events = (
                    data.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])
                )
                new = 0
                for e in events:
                    body = e.get("content", {}).get("body")
                    if isinstance(body, str) and body.startswith("sus") and body not in got[i]:
                        got[i][body] = now
                        new += 1
                delivered += bool(new)

        async def sender() -> None:
            headers = auth(sender_tok)
            t0 = time.perf_counter()
            for n in range(messages):
                delay = t0 + n * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                body = f"sus{n}"
                url = f"{CS}/rooms/{q(room)}/send/m.room.message/{secrets.token_hex(8)}"
                async with session.put(url, json={"msgtype": "m.text", "body": body}, headers=headers) as r:
                    r.raise_for_status()
                    await r.read()
                sent_at[body] = time.perf_counter()

        tasks = [asyncio.create_task(receiver(i)) for i in range(receivers)]
        # Let the long-polls reach the server before the first message.
        await asyncio.sleep(1.0)
        measuring(True)
        meter = CpuMeter(procs).start() if procs is not None else None
        t = time.perf_counter()
        await sender()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
        elapsed = time.perf_counter() - t
        cpu = cpu_of(meter)
        measuring(False)
    latencies = sorted(max(0.0, at - sent_at[body]) * 1000 for g in got for body, at in g.items())
    key = f"sustained{receivers}"
    out = {
        f"{key}_p50_ms": percentile(latencies, 50),
        f"{key}_p95_ms": percentile(latencies, 95),
        f"{key}_p99_ms": percentile(latencies, 99),
        f"{key}_delivered_syncs": float(delivered),
        f"{key}_seconds": elapsed,
    }
    if cpu is not None:
        out[f"{key}_cpu_per_sync_ms"] = cpu["total"] * 1000 / max(delivered, 1)
        out[f"{key}_cpu_server_s"] = cpu["server"]
        out[f"{key}_cpu_db_s"] = cpu["db"]
    return out


async def catch_up(http: httpx.AsyncClient, tok: str, since: str) -> str:
    r = await http.get(CS + "/sync", params={"timeout": 0, "since": since, "filter": SUSTAINED_FILTER},
                       headers=auth(tok))  # fmt: skip
    r.raise_for_status()
    return str(r.json()["next_batch"])


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return values[k]


SCENARIOS = ("send", "send_one_room", "wakeup", "sustained20", "sustained200", "initial_sync", "messages",
             "create_room", "join_storm")  # fmt: skip


async def run_all(
    base: str, procs: ServerProcesses | None = None, scenarios: tuple[str, ...] = SCENARIOS
) -> dict[str, float]:
    print(f"measuring {base} ...", flush=True)
    results: dict[str, float] = {}
    if "send" in scenarios:
        results["send_throughput_eps"] = await bench_send_throughput(base)
    if "send_one_room" in scenarios:
        results.update(await bench_send_one_room(base, procs))
    if "wakeup" in scenarios:
        p50, p95 = await bench_sync_wakeup(base)
        results["sync_wakeup_p50_ms"], results["sync_wakeup_p95_ms"] = p50, p95
    for n in (20, 200):
        if f"sustained{n}" in scenarios:
            results.update(await bench_sustained(base, procs, n))
    if "initial_sync" in scenarios:
        results["initial_sync_50_rooms_ms"] = await bench_initial_sync(base)
    if "messages" in scenarios:
        results["messages_1000_events_ms"] = await bench_messages(base)
    if "create_room" in scenarios:
        results["create_room_p50_ms"] = await bench_create_room(base)
    if "join_storm" in scenarios:
        results["join_storm_100_s"] = await bench_join_storm(base)
    if procs is not None:
        rss = procs.rss()
        results["rss_after_mb"] = sum(rss.values())
        for name, mb in rss.items():
            print(f"  rss after: {name}: {mb:.0f} MiB", flush=True)
    return results


#: Metrics where a higher value is better; every other one is a time or a cost.
HIGHER_IS_BETTER = ("_eps",)
#: Informational metrics, not compared.
NOT_COMPARED = ("_delivered_syncs", "_seconds", "_cpu_server_s", "_cpu_db_s")


def print_table(ours: dict[str, float], theirs: dict[str, float] | None, title: str) -> None:
    print(f"\n== {title}")
    print(f"{'metric':34} {'dagma':>10}" + (f" {'synapse':>10} {'ratio':>8}" if theirs else ""))
    for key, value in ours.items():
        line = f"{key:34} {value:10.1f}"
        if theirs and key in theirs:
            other = theirs[key]
            if key.endswith(NOT_COMPARED) or not value or not other:
                line += f" {other:10.1f}"
            else:
                better = value / other if key.endswith(HIGHER_IS_BETTER) else other / value
                line += f" {other:10.1f} {better:7.2f}x"
        print(line)
    if theirs:
        print("ratio > 1 means Dagma is better (higher throughput / lower latency or cost)")


def check_targets(ours: dict[str, float], theirs: dict[str, float]) -> None:
    """The targets of issue #12, for one round."""

    def ratio(key: str) -> float:
        return theirs.get(key, float("nan")) / ours.get(key, float("nan"))

    checks = [
        ("sustained20 p95 <= 1/2 Synapse", ratio("sustained20_p95_ms") >= 2),
        ("cpu per delivered sync <= 2 ms", ours.get("sustained20_cpu_per_sync_ms", 99) <= 2),
        ("cpu per delivered sync <= 1/5 Synapse", ratio("sustained20_cpu_per_sync_ms") >= 5),
        ("sustained200 p95 <= 1/2 Synapse", ratio("sustained200_p95_ms") >= 2),
        ("sustained200 cpu/sync <= 1/2 Synapse", ratio("sustained200_cpu_per_sync_ms") >= 2),
        ("cpu/sync grows < 1.5x from 20 to 200",
         ours.get("sustained200_cpu_per_sync_ms", 99) < 1.5 * ours.get("sustained20_cpu_per_sync_ms", 0)),
        ("send 8 senders >= 2.5x Synapse", 1 / ratio("send_one_room_eps") >= 2.5),
        ("cpu per sent message <= 1/3 Synapse", ratio("send_cpu_per_msg_ms") >= 3),
        ("rss after <= 1/2 Synapse", ratio("rss_after_mb") >= 2),
    ]  # fmt: skip
    for name, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {name}")


def machine_load() -> str:
    return Path("/proc/loadavg").read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="measure this server instead of starting Dagma")
    parser.add_argument("--compare-url", help="also measure this server (e.g. Synapse) and print ratios")
    parser.add_argument("--sqlite", action="store_true", help="start Dagma on SQLite instead of PostgreSQL")
    parser.add_argument(
        "--with-synapse", action="store_true", help="start Synapse (bench/synapse_server.py) and compare"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds (Dagma then the other server, alternately)"
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}"
    )
    parser.add_argument(
        "--dev-venv",
        action="store_true",
        help="serve Dagma from this interpreter (the dev venv) instead of a production-only venv",
    )
    args = parser.parse_args()
    scenarios = tuple(s for s in args.scenarios.split(",") if s)
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    server = None
    synapse = None
    base = args.url
    ours_procs: ServerProcesses | None = None
    theirs_procs: ServerProcesses | None = None
    print(f"machine: {os.cpu_count()} CPUs, load average before: {machine_load()}", flush=True)
    if args.with_synapse:
        from bench.synapse_server import SynapseServer
        from tests.support.live import free_port

        synapse = SynapseServer(Path(tempfile.mkdtemp(prefix="synapse-bench-")), free_port()).start()
        args.compare_url = synapse.base_url
        assert synapse.proc is not None
        theirs_procs = ServerProcesses(synapse.proc.pid, synapse.db_name)
    if base is None:
        from tests.support.live import LiveServer

        python = None if args.dev_venv else production_python()
        server = LiveServer(Path(tempfile.mkdtemp(prefix="dagma-bench-")), database="sqlite" if args.sqlite else "postgres",
                            redis=not args.sqlite, config=PRODUCTION_LIKE, python=python)  # fmt: skip
        server.start()
        base = server.base_url
        assert server.proc is not None
        if not args.sqlite:
            ours_procs = ServerProcesses(server.proc.pid, server.db_name)
    rounds: list[tuple[dict[str, float], dict[str, float] | None]] = []
    try:
        for procs, name in ((ours_procs, "dagma"), (theirs_procs, "synapse")):
            if procs is not None:
                for proc_name, mb in procs.rss().items():
                    print(f"{name} rss idle: {proc_name}: {mb:.0f} MiB", flush=True)
        for n in range(args.rounds):
            ours = asyncio.run(run_all(base, ours_procs, scenarios))
            print(f"round {n + 1} dagma:", {k: round(v, 1) for k, v in ours.items()}, flush=True)
            theirs = (
                asyncio.run(run_all(args.compare_url, theirs_procs, scenarios)) if args.compare_url else None
            )
            if theirs:
                print(f"round {n + 1} other:", {k: round(v, 1) for k, v in theirs.items()}, flush=True)
            rounds.append((ours, theirs))
            print_table(ours, theirs, f"round {n + 1} (load average now: {machine_load()})")
            if theirs:
                check_targets(ours, theirs)
    finally:
        for procs in (ours_procs, theirs_procs):
            if procs is not None:
                procs.close()
        if server is not None:
            server.destroy()
        if synapse is not None:
            synapse.destroy()
    print(f"\nload average after: {machine_load()}")


if __name__ == "__main__":
    main()

"""Client-API benchmark over real HTTP: prints numbers (and ratios when comparing two servers).

    DAGMA_NO_BOOTSTRAP=1 .venv/bin/python bench/client_api_bench.py                 # starts Dagma itself
    DAGMA_NO_BOOTSTRAP=1 .venv/bin/python bench/client_api_bench.py --url http://127.0.0.1:8008
    DAGMA_NO_BOOTSTRAP=1 .venv/bin/python bench/client_api_bench.py --compare-url http://127.0.0.1:8448  # e.g. Synapse

Measures, with the standard client-server API only (so any homeserver can be measured):
  1. message send throughput with 8 concurrent senders (events/s)
  2. /sync wake-up latency p50/p95 for 20 long-polling receivers (ms, send -> response)
  3. initial sync of a user in 50 rooms (ms)
  4. /messages pagination of 1,000 events, 100 per page (ms for all pages)
The target server must allow open registration (the self-started Dagma does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CS = "/_matrix/client/v3"


def q(s: str) -> str:
    return quote(s, safe="")


async def register(http: httpx.AsyncClient, prefix: str) -> tuple[str, str]:
    body = {
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


async def run_all(base: str) -> dict[str, float]:
    print(f"measuring {base} ...", flush=True)
    results: dict[str, float] = {}
    results["send_throughput_eps"] = await bench_send_throughput(base)
    p50, p95 = await bench_sync_wakeup(base)
    results["sync_wakeup_p50_ms"], results["sync_wakeup_p95_ms"] = p50, p95
    results["initial_sync_50_rooms_ms"] = await bench_initial_sync(base)
    results["messages_1000_events_ms"] = await bench_messages(base)
    return results


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
    args = parser.parse_args()
    server = None
    synapse = None
    base = args.url
    if args.with_synapse:
        from bench.synapse_server import SynapseServer
        from tests.support.live import free_port

        synapse = SynapseServer(Path(tempfile.mkdtemp(prefix="synapse-bench-")), free_port()).start()
        args.compare_url = synapse.base_url
    if base is None:
        from tests.support.live import LiveServer

        server = LiveServer(Path(tempfile.mkdtemp(prefix="dagma-bench-")), database="sqlite" if args.sqlite else "postgres",
                            redis=not args.sqlite)  # fmt: skip
        server.start()
        base = server.base_url
    try:
        ours = asyncio.run(run_all(base))
        print("dagma:", {k: round(v, 1) for k, v in ours.items()}, flush=True)
        theirs = asyncio.run(run_all(args.compare_url)) if args.compare_url else None
    finally:
        if server is not None:
            server.destroy()
        if synapse is not None:
            synapse.destroy()
    print(f"{'metric':32} {'dagma':>12}" + (f" {'other':>12} {'ratio':>8}" if theirs else ""))
    for key, value in ours.items():
        line = f"{key:32} {value:12.1f}"
        if theirs:
            other = theirs[key]
            better = value / other if key.endswith("eps") else other / value
            line += f" {other:12.1f} {better:7.2f}x"
        print(line)
    if theirs:
        print("ratio > 1 means Dagma is better (higher throughput / lower latency)")


if __name__ == "__main__":
    main()

"""Benchmark: persisting a message into a 10,000-member room, at 1k vs 100k events of history.

    python3 manage.py shell -c "import runpy; runpy.run_path('bench/persist_bench.py', run_name='__main__')"
    # or simply:
    DAGMA_NO_BOOTSTRAP=1 .venv/bin/python bench/persist_bench.py [--members 10000] [--history 1000 100000]

Uses a fresh PostgreSQL database (``dagma_bench``) and the real pipeline
(``send_local_event``, ``persist_received_event``): members join as remote
users (each join is a full state event through the pipeline); history is
grown with ordinary local messages. Prints per-event timings (median, p95)
and the ratio between the two history sizes; the budget is 10 ms per event.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(db_name: str, *, reuse: bool) -> None:
    import psycopg

    os.environ["DAGMA_DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db_name}"
    os.environ.setdefault("DAGMA_REDIS_URL", "redis://127.0.0.1:6379/9")
    os.environ["DJANGO_SETTINGS_MODULE"] = "dagma_project.settings.test"
    if not reuse:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')  # type: ignore[arg-type]
            conn.execute(f'CREATE DATABASE "{db_name}"')  # type: ignore[arg-type]
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.conf import settings

    from dagcore.protocol import signing

    key = Path(settings.DAGMA.signing_key_path)
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text(signing.write_signing_keys([signing.generate_signing_key()]))


def build_room(members: int) -> str:
    from django.conf import settings

    from dagcore.actions.create_room import RoomSpec, create_room
    from dagcore.actions.persist_event import persist_received_event
    from dagcore.protocol.auth_rules import auth_types_for_event
    from dagcore.protocol.room_versions import get_room_version
    from dagcore.store import events as event_store
    from dagcore.store import rooms as room_store
    from dagcore.store import state as state_store
    from tests.support.events import RemoteServer

    alice = f"@alice:{settings.SERVER_NAME}"
    room_id, _ = create_room(RoomSpec(creator=alice, room_version="11", preset="public_chat"))
    remote = RemoteServer("remote.bench")
    version = get_room_version("11")
    room = room_store.get_room(room_id)
    assert room is not None
    t0 = time.perf_counter()
    for i in range(members - 1):
        user = f"@m{i}:remote.bench"
        content = {"membership": "join"}
        keys = auth_types_for_event(
            version, event_type="m.room.member", state_key=user, sender=user, content=content
        )
        room.refresh_from_db()
        nids = state_store.get_current_state_ids(room, keys)
        ids = event_store.get_event_ids_for_nids(nids.values())
        ext = event_store.get_forward_extremities(room)
        event = remote.event(
            version, room_id=room_id, sender=user, event_type="m.room.member", content=content, state_key=user,
            prev_events=[e.event_id for e in ext], auth_events=[ids[nids[k]] for k in keys if k in nids],
            depth=max(e.depth for e in ext) + 1,
        )  # fmt: skip
        persist_received_event(event)
        if (i + 1) % 1000 == 0:
            print(
                f"  {i + 1} members joined ({(time.perf_counter() - t0) / (i + 1) * 1000:.1f} ms/join)",
                flush=True,
            )
    return room_id


def grow_history(room_id: str, target: int) -> None:
    from dagcore.models import Event as EventRow
    from dagcore.store import rooms as room_store

    room = room_store.get_room(room_id)
    count = EventRow.objects.filter(room=room).count()
    t0 = time.perf_counter()
    n = 0
    while count < target:
        send(room_id, f"history {count}")
        count += 1
        n += 1
        if n % 10000 == 0:
            print(f"  history {count} ({(time.perf_counter() - t0) / n * 1000:.2f} ms/event)", flush=True)


def send(room_id: str, body: str) -> None:
    from django.conf import settings

    from dagcore.actions.persist_event import send_local_event

    send_local_event(
        room_id=room_id,
        sender=f"@alice:{settings.SERVER_NAME}",
        event_type="m.room.message",
        content={"msgtype": "m.text", "body": body},
    )


def measure_fork_resolution(room_id: str, conflicts: int = 200) -> float:
    """Two branches of ``conflicts // 2`` remote state events each from one fork point; time the
    database-backed resolution of the two resulting states (the work a fork merge does)."""
    from dagcore.actions.persist_event import persist_received_event
    from dagcore.protocol.auth_rules import auth_types_for_event
    from dagcore.protocol.room_versions import get_room_version
    from dagcore.protocol.state_res import resolve_state
    from dagcore.store import events as event_store
    from dagcore.store import rooms as room_store
    from dagcore.store import state as state_store
    from dagcore.store.state_res_store import DatabaseStateResStore
    from tests.support.events import RemoteServer

    version = get_room_version("11")
    remote = RemoteServer("remote.bench")
    room = room_store.get_room(room_id)
    assert room is not None
    fork = event_store.get_forward_extremities(room)
    fork_ids = [e.event_id for e in fork]
    depth = max(e.depth for e in fork)
    state_nids = state_store.get_current_state_ids(room)
    ids = event_store.get_event_ids_for_nids(state_nids.values())
    state = {k: ids[n] for k, n in state_nids.items()}
    heads = []
    for branch in range(2):
        prev, d = fork_ids, depth
        for i in range(conflicts // 2):
            # Members leave on one branch and change their display name on the other:
            # every key conflicts between the branches.
            user = f"@m{i}:remote.bench"
            content = (
                {"membership": "leave"} if branch == 0 else {"membership": "join", "displayname": f"n{i}"}
            )
            keys = auth_types_for_event(
                version, event_type="m.room.member", state_key=user, sender=user, content=content
            )
            d += 1
            ev = remote.event(version, room_id=room_id, sender=user, event_type="m.room.member", content=content,
                              state_key=user, prev_events=prev, auth_events=[state[k] for k in keys if k in state],
                              depth=d)  # fmt: skip
            persist_received_event(ev)
            prev = [ev.event_id]
        heads.append(prev[0])
    groups = [s.state_group for s in event_store.get_events_by_ids(heads).values()]
    times = []
    for _ in range(3):
        t = time.perf_counter()
        sets_nids = [state_store.get_state_ids(g) for g in groups if g is not None]
        id_of = event_store.get_event_ids_for_nids({n for s in sets_nids for n in s.values()})
        resolve_state(
            version, [{k: id_of[n] for k, n in s.items()} for s in sets_nids], DatabaseStateResStore()
        )
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def measure(room_id: str, n: int) -> list[float]:
    times = []
    for i in range(n):
        t = time.perf_counter()
        send(room_id, f"measured {i}")
        times.append((time.perf_counter() - t) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--history", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--db", default="dagma_bench")
    parser.add_argument("--reuse", action="store_true", help="measure the room a previous run left in --db")
    parser.add_argument("--no-fork", action="store_true", help="skip the fork-resolution measurement")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="with --reuse: build a second room of --members with the smallest --history and measure both "
        "rooms alternately, so both see the same machine load",
    )
    args = parser.parse_args()
    setup_django(args.db, reuse=args.reuse)
    if args.reuse:
        from dagcore.models import Room

        room = Room.objects.order_by("id").first()
        assert room is not None, f"no room in {args.db} to reuse"
        room_id = room.room_id
    else:
        print(f"building a room with {args.members} joined members (PostgreSQL)...", flush=True)
        room_id = build_room(args.members)
    if args.reuse and args.interleave:
        small_target = min(args.history)
        print(f"building a second room with {args.members} members and {small_target} events...", flush=True)
        small_room = build_room(args.members)
        grow_history(small_room, small_target)
        from dagcore.models import Event as EventRow
        from dagcore.store import rooms as room_store

        big_n = EventRow.objects.filter(room=room_store.get_room(room_id)).count()
        small_n = EventRow.objects.filter(room=room_store.get_room(small_room)).count()
        big_t: list[float] = []
        small_t: list[float] = []
        for _ in range(args.samples):
            big_t += measure(room_id, 1)
            small_t += measure(small_room, 1)
        for label, n, times in (("small", small_n, small_t), ("big", big_n, big_t)):
            med = statistics.median(times)
            p95 = sorted(times)[int(len(times) * 0.95)]
            print(
                f"{label} room, {n:>7} events of history: median {med:.2f} ms, p95 {p95:.2f} ms (budget 10 ms)"
            )
        print(f"ratio median big/small: {statistics.median(big_t) / statistics.median(small_t):.2f} "
              "(1.0 = independent of history; measured alternately under the same load)")  # fmt: skip
        return
    results: dict[int, tuple[float, float]] = {}
    for target in sorted(args.history):
        print(f"growing history to {target} events...", flush=True)
        grow_history(room_id, target)
        times = measure(room_id, args.samples)
        med = statistics.median(times)
        p95 = sorted(times)[int(len(times) * 0.95)]
        results[target] = (med, p95)
        from dagcore.models import Event as EventRow
        from dagcore.store import rooms as room_store

        actual = EventRow.objects.filter(room=room_store.get_room(room_id)).count()
        # A room of N members already holds N join events: the actual size is printed too.
        print(
            f"history {target:>7} (room holds {actual} events): median {med:.2f} ms, p95 {p95:.2f} ms "
            "per message (budget 10 ms)",
            flush=True,
        )
    if len(results) >= 2:
        lo, hi = min(results), max(results)
        print(f"ratio median {hi}/{lo}: {results[hi][0] / results[lo][0]:.2f} (1.0 = independent of history)")
    if args.no_fork:
        return
    fork_ms = measure_fork_resolution(room_id)
    print(f"state resolution of two forks (200 conflicting member events) from the database: "
          f"median {fork_ms:.0f} ms (budget 1000 ms, ratio {fork_ms / 1000:.3f})")  # fmt: skip


if __name__ == "__main__":
    main()

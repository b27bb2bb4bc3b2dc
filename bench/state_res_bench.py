"""State resolution benchmark: two forks of a 10,000-member room, 200 conflicting state events.

    .venv/bin/python bench/state_res_bench.py [--members N] [--conflicts N] [--runs N]

Builds the room for room versions 10 (state res v2) and 12 (v2.1), precomputes the
in-memory store's auth chains (a DB store keeps them materialised), then times
``resolve_state`` over a few runs and prints the times in ms and the ratio to the
1 s budget. Half the conflicting events are on each fork: power levels changes, kicks and
bans (power events), a topic, display name changes and self-leaves (mainline-ordered).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dagcore.protocol.events import Event, StateKey
from dagcore.protocol.room_versions import RoomVersion, get_room_version
from dagcore.protocol.state_res import InMemoryStateResStore, resolve_state

BUDGET_MS = 1000.0
ALICE = "@alice:a.test"


class _Builder:
    def __init__(self, version: RoomVersion) -> None:
        self.version = version
        self.events: dict[str, Event] = {}
        self.ts = 1_000_000
        self.n = 0
        self.room_id = "!create" if version.room_id_is_create_event_hash else "!room:a.test"

    def add(
        self,
        state: dict[StateKey, str],
        event_type: str,
        state_key: str,
        sender: str,
        content: dict[str, Any],
        auth_keys: list[StateKey],
        prev: list[str],
        event_id: str | None = None,
    ) -> str:
        self.n += 1
        self.ts += 1
        eid = event_id or f"$ev{self.n}"
        if not self.version.room_id_is_create_event_hash:
            auth_keys = [("m.room.create", ""), *auth_keys]
        pdu: dict[str, Any] = {
            "type": event_type,
            "state_key": state_key,
            "sender": sender,
            "content": content,
            "prev_events": prev,
            "auth_events": [state[k] for k in dict.fromkeys(auth_keys) if k in state],
            "depth": self.n,
            "origin_server_ts": self.ts,
        }
        if event_type != "m.room.create" or not self.version.room_id_is_create_event_hash:
            pdu["room_id"] = self.room_id
        self.events[eid] = Event(pdu, self.version, event_id=eid)
        state[(event_type, state_key)] = eid
        return eid


def build_room(
    version_id: str, members: int, conflicts: int
) -> tuple[RoomVersion, dict[str, Event], list[dict]]:
    version = get_room_version(version_id)
    b = _Builder(version)
    state: dict[StateKey, str] = {}
    create_content: dict[str, Any] = {"room_version": version_id}
    if not version.implicit_room_creator:
        create_content["creator"] = ALICE
    pl_key: StateKey = ("m.room.power_levels", "")
    jr_key: StateKey = ("m.room.join_rules", "")

    def me(user: str) -> StateKey:
        return ("m.room.member", user)

    create = b.add(state, "m.room.create", "", ALICE, create_content, [], [], event_id="$create")
    last = b.add(state, "m.room.member", ALICE, ALICE, {"membership": "join"}, [], [create])
    admins = {} if version.privileged_creators else {ALICE: 100}
    last = b.add(state, *pl_key, ALICE, {"users": admins}, [me(ALICE)], [last])
    last = b.add(state, *jr_key, ALICE, {"join_rule": "public"}, [pl_key, me(ALICE)], [last])
    users = [f"@u{i}:s{i % 50}.test" for i in range(members)]
    for user in users:
        last = b.add(state, "m.room.member", user, user, {"membership": "join"}, [pl_key, jr_key], [last])

    forks = [dict(state), dict(state)]
    per_fork = conflicts // 2
    cursor = 0

    def take(n: int) -> list[str]:
        nonlocal cursor
        chunk = users[cursor : cursor + n]
        cursor += n
        return chunk

    for f, fork in enumerate(forks):
        prev = [last]
        budget = per_fork

        def send(event_type: str, state_key: str, sender: str, content: dict, auth: list[StateKey]) -> None:
            nonlocal budget, prev
            prev = [b.add(fork, event_type, state_key, sender, content, auth, prev)]  # noqa: B023
            budget -= 1

        moderator = users[-1 - f]
        send(*pl_key, ALICE, {"users": {**admins, moderator: 50}}, [pl_key, me(ALICE)])
        send("m.room.topic", "", ALICE, {"topic": f"fork {f}"}, [pl_key, me(ALICE)])
        power = budget // 3
        for i, user in enumerate(take(power)):
            membership = "ban" if i % 2 else "leave"
            send("m.room.member", user, ALICE, {"membership": membership}, [pl_key, me(ALICE), me(user)])
        half = budget // 2
        for user in take(half):
            content = {"membership": "join", "displayname": f"{user} on fork {f}"}
            send("m.room.member", user, user, content, [pl_key, jr_key, me(user)])
        for user in take(budget):
            send("m.room.member", user, user, {"membership": "leave"}, [pl_key, me(user)])
    return version, b.events, forks


def bench(version_id: str, members: int, conflicts: int, runs: int) -> None:
    t0 = time.perf_counter()
    version, events, forks = build_room(version_id, members, conflicts)
    setup_ms = (time.perf_counter() - t0) * 1000
    conflicted_keys = [k for k in forks[0].keys() | forks[1].keys() if forks[0].get(k) != forks[1].get(k)]
    fork_only = {f[k] for f in forks for k in conflicted_keys if k in f} - {
        e.event_id for e in events.values() if e.depth <= members + 4
    }

    # Cold: a fresh store memoises the auth chains of all 10k members inside the call
    # (what the CLI does). Warm: chains already there (what a DB chain index gives).
    t = time.perf_counter()
    resolve_state(version, forks, InMemoryStateResStore(events))
    cold_ms = (time.perf_counter() - t) * 1000
    store = InMemoryStateResStore(events)
    store.precompute_auth_chains()

    times = []
    result: dict = {}
    for _ in range(runs):
        t = time.perf_counter()
        result = resolve_state(version, forks, store)
        times.append((time.perf_counter() - t) * 1000)
    best, median = min(times), statistics.median(times)
    print(
        f"room v{version_id} ({version.state_res.value}): {members} joined members, {len(fork_only)} conflicting "
        f"state events on {len(conflicted_keys)} keys, {len(result)} resolved keys (setup {setup_ms:.0f} ms)"
    )
    print(
        f"  resolve_state, precomputed chains, {runs} runs: best {best:.1f} ms, median {median:.1f} ms, "
        f"max {max(times):.1f} ms -> {median / BUDGET_MS:.3f} of the {BUDGET_MS:.0f} ms budget"
    )
    print(
        f"  resolve_state, cold store (memoising every chain): {cold_ms:.1f} ms -> {cold_ms / BUDGET_MS:.3f} of the budget"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--conflicts", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for version_id in ("10", "12"):
        bench(version_id, args.members, args.conflicts, args.runs)


if __name__ == "__main__":
    main()

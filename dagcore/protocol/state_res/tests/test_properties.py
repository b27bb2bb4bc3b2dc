"""Properties of state resolution over random forked rooms (Hypothesis)."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagcore.protocol.state_res import resolve_state
from dagcore.protocol.state_res.unconflicted import separate

from .dag import ALICE, BOB, CAROL, DAVE, EVE, PL, Fork, Room, new_room

USERS = [ALICE, BOB, CAROL, DAVE, EVE]
OPERATIONS = ["branch", "join", "leave", "kick", "ban", "invite", "topic", "power_levels", "join_rule"]


def _apply(room: Room, forks: list[Fork], op: tuple[Any, ...]) -> None:
    kind, fork_index, actor, target, level, ts_slot = op
    fork = forks[fork_index % len(forks)]
    # Few distinct timestamps, so ties (and the event_id tie-break) are common.
    ts = 1_000 + 10 * ts_slot
    if kind == "branch":
        if len(forks) < 4:
            forks.append(fork.copy())
    elif kind == "join":
        fork.try_send("m.room.member", actor, {"membership": "join"}, state_key=actor, ts=ts)
    elif kind == "leave":
        fork.try_send("m.room.member", actor, {"membership": "leave"}, state_key=actor, ts=ts)
    elif kind in ("kick", "ban", "invite"):
        membership = {"kick": "leave", "ban": "ban", "invite": "invite"}[kind]
        fork.try_send("m.room.member", actor, {"membership": membership}, state_key=target, ts=ts)
    elif kind == "topic":
        fork.try_send("m.room.topic", actor, {"topic": f"by {actor}"}, ts=ts)
    elif kind == "power_levels":
        current = room.events[fork.state[PL]].content
        users = dict(current.get("users", {}))
        users[target] = [0, 50, 100][level]
        fork.try_send("m.room.power_levels", actor, {**current, "users": users}, ts=ts)
    elif kind == "join_rule":
        fork.try_send("m.room.join_rules", actor, {"join_rule": ["public", "invite"][level % 2]}, ts=ts)


operations = st.tuples(
    st.sampled_from(OPERATIONS),
    st.integers(min_value=0, max_value=3),
    st.sampled_from(USERS),
    st.sampled_from(USERS),
    st.integers(min_value=0, max_value=2),
    st.integers(min_value=0, max_value=5),
)


@st.composite
def forked_rooms(draw):
    version = draw(st.sampled_from(["10", "11", "12"]))
    room, main = new_room(version, admins={BOB: 50, CAROL: 100}, members=(BOB, CAROL, DAVE))
    forks = [main, main.copy()]
    for op in draw(st.lists(operations, min_size=15, max_size=60)):
        _apply(room, forks, op)
    picked = draw(st.lists(st.integers(min_value=0, max_value=len(forks) - 1), min_size=2, max_size=3))
    return room, [dict(forks[i].state) for i in picked]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forked_rooms())
def test_resolution_is_independent_of_the_order_of_the_input_state_sets(case):
    room, state_sets = case
    store = room.store()
    results = [resolve_state(room.version, list(p), store) for p in itertools.permutations(state_sets)]
    assert all(r == results[0] for r in results[1:])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forked_rooms())
def test_resolution_keeps_the_unconflicted_state_and_only_uses_known_state_events(case):
    room, state_sets = case
    resolved = resolve_state(room.version, state_sets, room.store())

    unconflicted, _ = separate(state_sets)
    assert resolved.items() >= unconflicted.items()
    for (event_type, state_key), event_id in resolved.items():
        event = room.events[event_id]
        assert (event.type, event.state_key) == (event_type, state_key)
    # Resolving the result with itself changes nothing.
    assert resolve_state(room.version, [resolved, dict(resolved)], room.store()) == resolved

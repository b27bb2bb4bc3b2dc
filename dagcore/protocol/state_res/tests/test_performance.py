"""Work bounds on the 10k-member case (``bench/state_res_bench.py`` has the timings).

Speed is measured in the benchmark, never in tests; here we guard the *amount of
work*: resolution must scale with the conflicts, not with the room's 10k members.
"""

from __future__ import annotations

import importlib

import pytest

from dagcore.protocol.state_res import InMemoryStateResStore, resolve_state

from .dag import ALICE, new_room


@pytest.mark.parametrize("version", ["10", "12"])
def test_two_forks_of_a_10k_member_room_resolve_with_auth_checks_proportional_to_the_conflicts(
    version, monkeypatch
):
    members = tuple(f"@u{i}:s{i % 50}.test" for i in range(10_000))
    room, main = new_room(version, members=members)
    a, b = main.copy(), main.copy()
    for i in range(100):
        a.kick(ALICE, members[i]) if i % 2 else a.ban(ALICE, members[i])
        b.send(
            "m.room.member",
            members[100 + i],
            {"membership": "join", "displayname": f"n{i}"},
            state_key=members[100 + i],
        )
    store = InMemoryStateResStore(room.events)
    iterative_auth_checks = importlib.import_module("dagcore.protocol.state_res.iterative_auth_checks")
    calls = 0
    real_check = iterative_auth_checks.check_event_auth

    def counting_check(*args, **kwargs):
        nonlocal calls
        calls += 1
        return real_check(*args, **kwargs)

    monkeypatch.setattr(iterative_auth_checks, "check_event_auth", counting_check)
    resolved = resolve_state(room.version, [a.state, b.state], store)

    assert len(resolved) == len(main.state)
    # 200 conflicted events (+ their auth difference) are checked; the 10k
    # unconflicted members are never re-authorised.
    assert 0 < calls <= 2 * 200 + 50, calls
    for i in range(100):
        expected = "leave" if i % 2 else "ban"
        assert room.events[resolved[("m.room.member", members[i])]].content["membership"] == expected

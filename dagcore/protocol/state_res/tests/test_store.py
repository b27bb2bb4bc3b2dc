"""The in-memory store: memoised auth chains and the auth difference."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagcore.protocol.state_res.store import AuthChainCycle, EventFetcher, InMemoryStateResStore

from .dag import event_map, make_event


def test_auth_chains_deeper_than_the_recursion_limit_are_walked_iteratively():
    depth = sys.getrecursionlimit() + 500
    events = [make_event("$e0")]
    events += [make_event(f"$e{i}", auth=(f"$e{i - 1}",)) for i in range(1, depth)]
    store = InMemoryStateResStore(event_map(*events))

    chain = store.auth_chain(f"$e{depth - 1}")

    assert len(chain) == depth - 1
    assert "$e0" in chain


def test_a_cycle_in_auth_events_is_reported_not_looped_on():
    events = event_map(
        make_event("$a", auth=("$c",)),
        make_event("$b", auth=("$a",)),
        make_event("$c", auth=("$b",)),
    )
    with pytest.raises(AuthChainCycle):
        InMemoryStateResStore(events).auth_chain("$c")


def test_missing_auth_events_are_in_the_chain_but_end_the_walk():
    store = InMemoryStateResStore(event_map(make_event("$a", auth=("$gone",))))
    assert store.auth_chain("$a") == {"$gone"}


def test_the_fetcher_asks_the_store_once_per_missing_event():
    calls: list[set[str]] = []

    class CountingStore(InMemoryStateResStore):
        def get_events(self, event_ids):
            ids = set(event_ids)
            calls.append(ids)
            return super().get_events(ids)

    fetcher = EventFetcher(CountingStore(event_map(make_event("$a"))))
    fetcher.fetch(["$a", "$gone"])
    assert fetcher.get("$a") is not None
    assert fetcher.get("$gone") is None
    fetcher.fetch(["$a", "$gone"])
    assert calls == [{"$a", "$gone"}]


# -- the auth difference matches its definition --------------------------------------


@st.composite
def dags_and_state_sets(draw):
    n = draw(st.integers(min_value=1, max_value=25))
    events = []
    for i in range(n):
        parents = draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)) if i else set()
        events.append(make_event(f"$e{i:02d}", auth=tuple(f"$e{p:02d}" for p in sorted(parents))))
    ids = [e.event_id for e in events]
    state_sets = draw(st.lists(st.sets(st.sampled_from(ids), max_size=8), min_size=2, max_size=4))
    return event_map(*events), state_sets


def _naive_full_chain(events, state_set):
    """The state set's events and everything reachable from them through auth_events."""
    seen: set[str] = set()
    stack = list(state_set)
    while stack:
        x = stack.pop()
        if x not in seen:
            seen.add(x)
            stack.extend(events[x].auth_event_ids)
    return seen


@settings(max_examples=200, deadline=None)
@given(dags_and_state_sets())
def test_the_auth_difference_is_the_union_minus_the_intersection_of_the_full_auth_chains(case):
    events, state_sets = case
    chains = [_naive_full_chain(events, s) for s in state_sets]
    expected = set().union(*chains) - set.intersection(*chains)

    assert InMemoryStateResStore(events).get_auth_chain_difference(state_sets) == expected

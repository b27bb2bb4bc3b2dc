"""The unconflicted state map and the conflicted state set.

Spec: https://spec.matrix.org/v1.19/rooms/v2/#definitions ("Unconflicted state map and
conflicted state set"): a key present in *every* state set with the *same* event is
unconflicted; every other (key, event) pair is conflicted — including a key that some
state sets lack, even if the others agree on it.

State maps of big rooms hold tens of thousands of entries while forks differ in a
handful, so this is one comprehension over the first state set plus a key-set difference
per state set; no per-entry Python work beyond a dict lookup.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagcore.protocol.events import StateKey, StateMap


def separate(state_sets: Sequence[StateMap]) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Split the state sets into ``(unconflicted state map, conflicted state set by key)``."""
    if not state_sets:
        return {}, {}
    first = state_sets[0]
    others = state_sets[1:]
    if not others:
        return dict(first), {}
    if len(others) == 1:
        other_get = others[0].get
        unconflicted = {key: eid for key, eid in first.items() if other_get(key) == eid}
    else:
        unconflicted = {key: eid for key, eid in first.items() if all(o.get(key) == eid for o in others)}
    # A key of the unconflicted map has the same event in every state set, so a state
    # set's conflicted entries are exactly its keys outside the unconflicted map.
    conflicted: dict[StateKey, set[str]] = {}
    for state_set in state_sets:
        for key in state_set.keys() - unconflicted.keys():
            conflicted.setdefault(key, set()).add(state_set[key])
    return unconflicted, conflicted

"""The conflicted state subgraph (state resolution v2.1, room version 12).

Spec: https://spec.matrix.org/v1.19/rooms/v12/#definitions ("Conflicted state
subgraph", MSC4297): starting from an event in the conflicted state set and following
``auth_events`` edges may lead to another event in the conflicted state set; the union of
all such paths between any pair of conflicted events (endpoints included) is the
conflicted state subgraph. v2.1 adds it to the full conflicted set so that events *between*
an old and a new conflicted event (say Bob's promotion between Alice's admin power levels
and Bob's promotion of Charlie) are replayed too.

An event ``n`` is on such a path exactly when it is an auth ancestor of some conflicted
event (or one itself) *and* some conflicted event is an auth ancestor of ``n`` (or ``n``
itself). We walk the ancestors of the conflicted events breadth-first (one store query
per level), then decide "reaches a conflicted event" for each ancestor in one post-order
pass — iterative, since chains are deeper than the recursion limit.
"""

from __future__ import annotations

from collections.abc import Collection

from dagcore.protocol.state_res.store import EventFetcher


def conflicted_subgraph(conflicted_event_ids: Collection[str], fetcher: EventFetcher) -> set[str]:
    """The conflicted state subgraph of ``conflicted_event_ids`` (which it includes)."""
    conflicted = set(conflicted_event_ids)
    if len(conflicted) < 2:
        return set(conflicted)

    # 1. Every auth ancestor of a conflicted event, with its auth parents.
    parents: dict[str, tuple[str, ...]] = {}
    frontier = set(conflicted)
    while frontier:
        fetcher.fetch(frontier)
        next_frontier: set[str] = set()
        for eid in frontier:
            event = fetcher.events.get(eid)
            ids = event.auth_event_ids if event is not None else ()
            parents[eid] = ids
            next_frontier.update(p for p in ids if p not in parents)
        frontier = next_frontier - parents.keys()

    # 2. reaches[n]: some auth parent of n is conflicted or reaches a conflicted event.
    # Post-order over the ancestor graph visits parents before children.
    reaches: dict[str, bool] = {}
    entered: set[str] = set()
    for root in conflicted:
        if root in entered:
            continue
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            eid, children_done = stack.pop()
            if children_done:
                reaches[eid] = any(p in conflicted or reaches.get(p, False) for p in parents.get(eid, ()))
                continue
            if eid in entered:
                continue
            entered.add(eid)
            stack.append((eid, True))
            stack.extend((p, False) for p in parents.get(eid, ()) if p not in entered)

    return conflicted | {eid for eid, hit in reaches.items() if hit}

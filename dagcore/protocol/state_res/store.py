"""What state resolution needs from storage, and an in-memory implementation of it.

Spec: https://spec.matrix.org/v1.19/rooms/v2/#definitions ("Auth chain", "Auth
difference"). The algorithm reads events by ID and asks for the auth difference of the
state sets; everything else it derives itself. The DB-backed store answers the auth
difference from its materialised auth-chain index; :class:`InMemoryStateResStore` (the
CLI, the tests and the benchmark) memoises each event's auth chain once and answers every
later call from the memo.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

from dagcore.protocol.events import Event


class StateResolutionError(ValueError):
    """The input cannot be resolved (it does not describe a room anyone could have built)."""


class AuthChainCycle(StateResolutionError):
    """The ``auth_events`` links loop: not a DAG."""


class MissingEvents(StateResolutionError):
    """Events the state sets name are unknown to the store."""

    def __init__(self, event_ids: Iterable[str]) -> None:
        self.event_ids = sorted(event_ids)
        shown = ", ".join(self.event_ids[:5]) + (", ..." if len(self.event_ids) > 5 else "")
        super().__init__(f"{len(self.event_ids)} state event(s) missing from the store: {shown}")


class StateResStore(Protocol):
    def get_events(self, event_ids: Iterable[str]) -> Mapping[str, Event]:
        """The events among ``event_ids`` that the store has; missing ones are simply absent."""
        ...

    def get_auth_chain_difference(self, state_sets: Sequence[Collection[str]]) -> set[str]:
        """``union(C_i) - intersection(C_i)`` where ``C_i`` is the full auth chain of state set *i*.

        ``C_i`` must include the state set's events themselves, not only their auth
        chains. Synapse computes it so, and the letter of the spec ("the union of the auth
        chains for each event") differs only for an event that is in every state set but
        in the auth chains of just some: such an event is unconflicted, and replaying it
        anyway would change a v2.1 resolution (its power levels could become the
        mainline). Every store must agree on this, or servers stop converging.
        """
        ...


class InMemoryStateResStore:
    """A :class:`StateResStore` over a dict of events.

    Auth chains are computed on first use by an iterative post-order walk (rooms have
    auth chains far deeper than Python's recursion limit) and memoised per event as
    frozensets, so repeated resolutions over the same room never re-walk a chain.
    Auth events missing from ``events`` end the walk: they are part of the chain (the
    ID is referenced) but contribute no ancestors.

    Memory is the sum of the chain sizes, which is fine for ordinary rooms (a member
    event's chain is the power levels history plus a few events) but quadratic for one
    long linear history; the DB store's chain index does not have that cost.
    """

    def __init__(self, events: Mapping[str, Event]) -> None:
        self._events = events
        self._chains: dict[str, frozenset[str]] = {}

    # -- StateResStore ---------------------------------------------------------

    def get_events(self, event_ids: Iterable[str]) -> Mapping[str, Event]:
        events = self._events
        return {eid: events[eid] for eid in event_ids if eid in events}

    def get_auth_chain_difference(self, state_sets: Sequence[Collection[str]]) -> set[str]:
        if len(state_sets) < 2:
            return set()
        sets = [s if isinstance(s, (set, frozenset)) else set(s) for s in state_sets]
        # Events in every state set put themselves and their chains into every C_i; call
        # that U. With X_i the same for set i's other events, C_i = U | X_i and the
        # difference is union(X_i) - intersection(X_i) - U. X_i is small (the forks' own
        # events); U (all the members' chains) is built only when there is a candidate.
        common = sets[0].intersection(*sets[1:])
        chains = self._chains
        for s in sets:
            for eid in s.difference(chains):  # C-speed when every chain is memoised already
                if eid not in chains:
                    self._walk(eid)
        partial: list[set[str]] = []
        for s in sets:
            own = s - common
            partial.append(set(own).union(*map(chains.__getitem__, own)))
        candidates = set().union(*partial) - partial[0].intersection(*partial[1:])
        if candidates and common:
            shared = set(common).union(*map(chains.__getitem__, common))
            candidates -= shared
        return candidates

    # -- auth chains -------------------------------------------------------------

    def auth_chain(self, event_id: str) -> frozenset[str]:
        """Every event reachable from ``event_id`` through ``auth_events`` (not itself)."""
        found = self._chains.get(event_id)
        if found is not None:
            return found
        self._walk(event_id)
        return self._chains[event_id]

    def precompute_auth_chains(self) -> None:
        """Memoise the chain of every event now (benchmarks time resolution, not warm-up)."""
        for event_id in self._events:
            if event_id not in self._chains:
                self._walk(event_id)

    def _walk(self, root: str) -> None:
        chains = self._chains
        events = self._events
        empty: frozenset[str] = frozenset()
        expanded: set[str] = set()
        stack = [root]
        while stack:
            eid = stack[-1]
            if eid in chains:
                stack.pop()
                continue
            event = events.get(eid)
            parents = event.auth_event_ids if event is not None else ()
            if eid not in expanded:
                expanded.add(eid)
                pending = [p for p in parents if p not in chains]
                for p in pending:
                    if p in expanded:
                        # Everything above an expanded-but-unfinished node on this stack
                        # was reached from it, so meeting it again as a parent is a loop.
                        raise AuthChainCycle(f"auth_events of {eid} lead back to {p}")
                if pending:
                    stack.extend(pending)
                    continue
            stack.pop()
            if not parents:
                chains[eid] = empty
                continue
            acc: set[str] = set(parents)
            for p in parents:
                acc |= chains[p]
            chains[eid] = frozenset(acc)


class EventFetcher:
    """One resolution's cache in front of a :class:`StateResStore`.

    Every step asks for the events it needs in one batch (one query for a DB store);
    events are then read from the cache. IDs the store does not have are remembered so
    they are asked for only once.
    """

    __slots__ = ("_store", "events", "missing")

    def __init__(self, store: StateResStore) -> None:
        self._store = store
        self.events: dict[str, Event] = {}
        self.missing: set[str] = set()

    def fetch(self, event_ids: Iterable[str]) -> None:
        events = self.events
        missing = self.missing
        wanted = {eid for eid in event_ids if eid not in events and eid not in missing}
        if not wanted:
            return
        found = self._store.get_events(wanted)
        events.update(found)
        if len(found) != len(wanted):
            missing.update(eid for eid in wanted if eid not in found)

    def get(self, event_id: str) -> Event | None:
        event = self.events.get(event_id)
        if event is None and event_id not in self.missing:
            self.fetch((event_id,))
            event = self.events.get(event_id)
        return event

    def fetch_auth_events_of(self, event_ids: Iterable[str]) -> None:
        """Fetch the ``auth_events`` of the given (already fetched) events in one batch."""
        events = self.events
        self.fetch(
            aid for eid in event_ids if (ev := events.get(eid)) is not None for aid in ev.auth_event_ids
        )

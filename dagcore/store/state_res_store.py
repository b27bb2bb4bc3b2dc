"""The database-backed ``StateResStore``: events by ID and the auth difference from stored chains."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from dagcore.models import Event as EventRow
from dagcore.protocol.events import Event
from dagcore.store.events import get_event_ids_for_nids, get_events_by_ids


@dataclass(frozen=True)
class PendingEvent:
    """An event being persisted in this transaction: its row is written last, after
    the state it leads to has been resolved, so the store is told about it directly."""

    nid: int
    event: Event
    auth_chain: Sequence[int]


class DatabaseStateResStore:
    """Implements ``dagcore.protocol.state_res.store.StateResStore`` over the events table.

    Events read once are kept for the life of the store (one resolution), so the
    algorithm's repeated lookups of the same auth events cost one query each.
    """

    def __init__(self, pending: PendingEvent | None = None) -> None:
        self._events: dict[str, Event] = {}
        self._pending = pending
        if pending is not None:
            self._events[pending.event.event_id] = pending.event

    def get_events(self, event_ids: Iterable[str]) -> Mapping[str, Event]:
        ids = list(event_ids)
        missing = [e for e in ids if e not in self._events]
        if missing:
            for eid, stored in get_events_by_ids(missing).items():
                if stored.rejected_reason is None:
                    # State resolution sees redacted events in their redacted form.
                    self._events[eid] = stored.effective_event
        return {e: self._events[e] for e in ids if e in self._events}

    def get_auth_chain_difference(self, state_sets: Sequence[Collection[str]]) -> set[str]:
        if len(state_sets) < 2:
            return set()
        all_ids = set().union(*state_sets)
        nid_of: dict[str, int] = {}
        chain_of: dict[int, list[int]] = {}
        ids = list(all_ids)
        for start in range(0, len(ids), 1000):
            rows = EventRow.objects.filter(event_id__in=ids[start : start + 1000]).values_list(
                "event_id", "id", "auth_chain"
            )
            for eid, nid, chain in rows:
                nid_of[eid] = nid
                chain_of[nid] = json.loads(chain) if chain else []
        if self._pending is not None and self._pending.event.event_id in all_ids:
            nid_of[self._pending.event.event_id] = self._pending.nid
            chain_of[self._pending.nid] = list(self._pending.auth_chain)
        # C_i = the full auth chain of set i (the events themselves included, which
        # the store protocol allows). Events present in every set contribute equally
        # to every C_i, so their chains only matter for removing candidates.
        sets = [{nid_of[e] for e in s if e in nid_of} for s in state_sets]
        common = set.intersection(*sets)
        per_set: list[set[int]] = []
        for s in sets:
            acc: set[int] = set()
            for nid in s - common:
                acc.add(nid)
                acc.update(chain_of[nid])
            per_set.append(acc)
        candidates: set[int] = set().union(*per_set) - per_set[0].intersection(*per_set[1:])
        if not candidates:
            return set()
        # Anything reachable from the common events is in every C_i.
        covered = set(common)
        for nid in common:
            covered.update(chain_of[nid])
        diff = candidates - covered
        found = set(get_event_ids_for_nids(diff).values())
        if self._pending is not None and self._pending.nid in diff:
            found.add(self._pending.event.event_id)
        return found

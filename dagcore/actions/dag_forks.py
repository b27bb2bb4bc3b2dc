"""A room's forks: its forward extremities and how their states resolve
(``manage.py dag forks ROOM [--explain]``, Politburo's forks page).

The resolution is run exactly as ``manage.py dag resolve FILE --explain`` runs it, over the
input file :func:`get_room_forks` builds (``resolve_input``): the extremities' distinct
states as ``state_sets`` and every event they name with its auth chain, in the form state
resolution sees them (redacted events redacted, rejected events left out). Saved to a file,
``dag resolve`` reproduces the account offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dagcore.actions.dag_check import RoomUnknown
from dagcore.protocol.events import Event, StateKey
from dagcore.protocol.room_versions import EventFormat, UnsupportedRoomVersion, get_room_version
from dagcore.protocol.state_res import InMemoryStateResStore, StateResolutionError, resolve_state
from dagcore.store import dag_doctor as dag_store
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store

CREATE_KEY: StateKey = ("m.room.create", "")


@dataclass
class ForksReport:
    room_id: str
    room_version: str
    extremities: list[dict[str, Any]]
    #: One input per distinct state among the extremities (several extremities may share one).
    resolve_input: dict[str, Any]
    explanation: list[str] = field(default_factory=list)
    resolved: dict[StateKey, str] = field(default_factory=dict)
    current: dict[StateKey, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def forked(self) -> bool:
        return len(self.extremities) > 1

    def differences(self) -> list[dict[str, Any]]:
        keys = sorted(set(self.resolved) | set(self.current))
        return [
            {
                "type": t,
                "state_key": s,
                "current": self.current.get((t, s)),
                "resolved": self.resolved.get((t, s)),
            }
            for t, s in keys
            if self.current.get((t, s)) != self.resolved.get((t, s))
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id, "room_version": self.room_version, "forked": self.forked,
            "forward_extremities": self.extremities, "explanation": self.explanation,
            "resolved_state": sorted([t, s, e] for (t, s), e in self.resolved.items()),
            "differences_from_current_state": self.differences(), "error": self.error,
            "resolve_input": self.resolve_input,
        }  # fmt: skip


def _pdu_for_file(event: Event) -> dict[str, Any]:
    pdu = dict(event.pdu)
    if event.room_version.event_format is not EventFormat.V1:
        pdu["event_id"] = event.event_id  # v3+: not part of the PDU; the resolve file wants it
    return pdu


def get_room_forks(room_id: str, *, explain: bool = True) -> ForksReport:
    """The room's extremities, the resolution of their states (explained) and its input file."""
    with dag_store.consistent_reads():
        return _room_forks(room_id, explain=explain)


def _room_forks(room_id: str, *, explain: bool) -> ForksReport:
    room = room_store.get_room(room_id)
    if room is None:
        raise RoomUnknown(room_id)
    extremities = event_store.get_forward_extremities(room)
    nodes = dag_store.get_nodes_by_ids([e.event_id for e in extremities], with_auth=False)
    shown = []
    for ex in extremities:
        node = nodes.get(ex.event_id)
        shown.append({
            "event_id": ex.event_id, "depth": ex.depth, "state_group": ex.state_group,
            "type": node.type if node else None, "state_key": node.state_key if node else None,
            "sender": node.sender if node else None,
        })  # fmt: skip
    groups = list(dict.fromkeys(e.state_group for e in extremities if e.state_group is not None))
    full = state_store.get_full_state_ids_of_groups(groups)
    nid_sets = [full[g] for g in groups if g in full]
    # Every event the states name, their auth chains and (v12) the create event.
    named = {n for s in nid_sets for n in s.values()}
    chains = event_store.get_auth_chains(named)
    wanted = named | {n for c in chains.values() for n in c}
    stored = event_store.get_events_by_nids(wanted)
    usable = {s.event_id: s.effective_event for s in stored.values() if s.rejected_reason is None}
    id_of = {nid: s.event_id for nid, s in stored.items()}
    state_sets = [{k: id_of[n] for k, n in s.items() if n in id_of} for s in nid_sets]
    resolve_input = {
        "room_version": room.room_version,
        "events": [_pdu_for_file(e) for _, e in sorted(usable.items())],
        "state_sets": [sorted([t, k, e] for (t, k), e in s.items()) for s in state_sets],
    }
    current_nids = state_store.get_current_state_ids(room)
    current_ids = event_store.get_event_ids_for_nids(current_nids.values())
    report = ForksReport(
        room_id=room.room_id, room_version=room.room_version, extremities=shown, resolve_input=resolve_input,
        current={k: current_ids[n] for k, n in current_nids.items() if n in current_ids},
    )  # fmt: skip
    if not state_sets:
        report.error = "the forward extremities have no state"
        return report
    try:
        version = get_room_version(room.room_version)
        # The in-memory store over the file's events: what ``dag resolve FILE`` runs.
        report.resolved = resolve_state(
            version,
            state_sets,
            InMemoryStateResStore(usable),
            explain=report.explanation.append if explain else None,
        )
    except (StateResolutionError, UnsupportedRoomVersion) as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    return report

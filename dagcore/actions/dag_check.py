"""The DAG doctor's diagnosis: what is wrong with a room's stored DAG and state
(``manage.py dag check``; issues 13 and 14).

Read-only and safe on a live server: nothing is locked, the room's events are read a page
at a time (``dagcore.store.dag_doctor``), every other question is one bounded query. Each
problem is a named :class:`Finding`:

==========================  ========  =====================================================
code                        severity  meaning
==========================  ========  =====================================================
``missing_auth_events``     fail      an event cites an auth event we do not hold
``missing_prev_events``     warn      a timeline event cites a prev event we do not hold and
                                      that is not a recorded gap (backfill will never fill it)
``event_without_state``     fail      a non-outlier event has no state group (Synapse #12549)
``unknown_state_group``     fail      an event names a state group that does not exist
``state_mismatch``          fail      the stored state before/after an event differs from the
                                      state recomputed from its prev events
``foreign_state``           fail      state naming another room's events, an unknown event or
                                      an event of another (type, state_key) (Synapse #7012)
``current_state_mismatch``  fail      current state differs from the resolution of the states
                                      of the forward extremities
``stale_extremities``       fail      listed forward extremities that have children, are
                                      rejected, soft-failed, outliers or unknown
``missing_extremities``     fail      events without children that are not listed (but for those an
                                      operator dropped: the admin API's ``DELETE .../forward_extremities``)
``too_many_extremities``    warn      more than :data:`EXTREMITIES_THRESHOLD` forward extremities
``rejected_auth_events``    fail      an accepted event cites a rejected auth event
``membership_mismatch``     fail      ``room_memberships`` / ``room_servers`` disagree with state
==========================  ========  =====================================================

The recomputation (:func:`analyse_room`) is what ``dag repair`` applies, so a repaired room
checks clean by construction.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field, replace
from typing import Any

from dagcore.clock import now_ms
from dagcore.models import AdminJob, Room
from dagcore.protocol.events import StateKey
from dagcore.protocol.room_versions import RoomVersion, get_room_version
from dagcore.protocol.state_res import StateResolutionError, resolve_state
from dagcore.store import dag_doctor as store
from dagcore.store import events as event_store
from dagcore.store import operations as operations_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store.dag_doctor import DagNode
from dagcore.store.state_res_store import DatabaseStateResStore

#: Synapse sends a dummy event to merge extremities past 10 (``dummy_events_threshold``).
EXTREMITIES_THRESHOLD = 10
#: Event IDs shown per finding; the count says how many there are.
SHOWN = 20
#: Rows a single check query returns at most.
QUERY_LIMIT = 1000

SEVERITY = {
    "missing_auth_events": "fail",
    "missing_prev_events": "warn",
    "event_without_state": "fail",
    "unknown_state_group": "fail",
    "state_mismatch": "fail",
    "foreign_state": "fail",
    "current_state_mismatch": "fail",
    "stale_extremities": "fail",
    "missing_extremities": "fail",
    "too_many_extremities": "warn",
    "rejected_auth_events": "fail",
    "membership_mismatch": "fail",
}
STATUS_RANK = {"ok": 0, "warn": 1, "fail": 2}

#: A state: the group that holds it, or its entries when no stored group does.
StateRef = int | dict[StateKey, int]


class RoomUnknown(Exception):
    """No such room on this server."""


@dataclass
class Finding:
    code: str
    message: str
    event_ids: list[str] = field(default_factory=list)
    count: int = 0
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def severity(self) -> str:
        return SEVERITY[self.code]

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code, "severity": self.severity, "message": self.message,
            "count": self.count, "event_ids": self.event_ids[:SHOWN], "details": self.details[:SHOWN],
        }  # fmt: skip


@dataclass
class RoomCheck:
    room_id: str
    room_version: str
    events: int
    extremities: int
    findings: list[Finding]

    @property
    def status(self) -> str:
        return max((f.severity for f in self.findings), key=STATUS_RANK.__getitem__, default="ok")

    def finding(self, code: str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id, "room_version": self.room_version, "status": self.status,
            "events": self.events, "forward_extremities": self.extremities,
            "findings": [f.as_dict() for f in self.findings],
        }  # fmt: skip


@dataclass
class DagCheckReport:
    rooms: list[RoomCheck]

    @property
    def status(self) -> str:
        return max((r.status for r in self.rooms), key=STATUS_RANK.__getitem__, default="ok")

    @property
    def exit_code(self) -> int:
        return STATUS_RANK[self.status]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for room in self.rooms:
            for f in room.findings:
                out[f.code] = out.get(f.code, 0) + f.count
        return out

    def summary(self) -> str:
        bad = [r for r in self.rooms if r.status != "ok"]
        if not bad:
            return f"{len(self.rooms)} room(s) checked: no problems"
        codes = ", ".join(f"{c} {n}" for c, n in sorted(self.counts().items()))
        return f"{len(self.rooms)} room(s) checked, {len(bad)} with problems: {codes}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "summary": self.summary(), "counts": self.counts(),
            "rooms": [r.as_dict() for r in self.rooms],
        }  # fmt: skip


# --------------------------------------------------------------------------- the analysis


@dataclass
class EventState:
    """The recomputed states before and after one timeline event and whether they match
    what is stored. ``None``: not recomputable (a gap before the event and no stored state)."""

    before: StateRef | None
    after: StateRef | None
    before_ok: bool
    after_ok: bool
    note: str = ""


@dataclass
class RoomAnalysis:
    """Everything the check found about one room, and what a repair would make of it."""

    room: Room
    version: RoomVersion
    nodes: dict[str, DagNode]
    states: dict[str, EventState]
    listed_extremities: list[event_store.Extremity]
    expected_extremities: list[DagNode]
    expected_current: dict[StateKey, int] | None
    current_rows: dict[StateKey, int]
    gaps: set[str]
    unrecomputable: list[str]
    resolution_errors: list[str]
    #: Accepted events citing rejected auth events: ``event ID -> (auth event ID, its reason)``.
    rejected_auth: dict[str, tuple[str, str]]
    findings: list[Finding]


def _topological(nodes: Iterable[DagNode], known: Mapping[str, DagNode]) -> list[DagNode]:
    """Timeline events, each after its (known, timeline) prev events: Kahn's algorithm,
    ties broken by depth then arrival. A cycle (corruption) is appended by depth."""
    timeline = {n.event_id: n for n in nodes}
    waiting: dict[str, int] = {}
    children: dict[str, list[str]] = {}
    for n in timeline.values():
        prevs = {p for p in n.prev_ids if p in timeline}
        waiting[n.event_id] = len(prevs)
        for p in prevs:
            children.setdefault(p, []).append(n.event_id)
    ready = [(n.depth, n.nid, n.event_id) for n in timeline.values() if waiting[n.event_id] == 0]
    heapq.heapify(ready)
    out: list[DagNode] = []
    while ready:
        _, _, eid = heapq.heappop(ready)
        out.append(timeline[eid])
        for c in children.get(eid, ()):
            waiting[c] -= 1
            if waiting[c] == 0:
                child = timeline[c]
                heapq.heappush(ready, (child.depth, child.nid, c))
    if len(out) < len(timeline):
        placed = {n.event_id for n in out}
        out.extend(
            sorted((n for n in timeline.values() if n.event_id not in placed), key=lambda n: (n.depth, n.nid))
        )
    return out


class _States:
    """Contents of states (stored groups read through the state cache), resolutions memoised."""

    def __init__(self, room: Room, version: RoomVersion) -> None:
        self.room = room
        self.version = version
        self._resolved: dict[tuple[int, ...], dict[StateKey, int]] = {}
        self.unknown_groups: set[int] = set()

    def content(self, ref: StateRef | None) -> dict[StateKey, int] | None:
        if ref is None:
            return None
        if isinstance(ref, dict):
            return ref
        try:
            return state_store.get_state_ids(ref)
        except LookupError:
            self.unknown_groups.add(ref)
            return None

    def same(self, a: StateRef | None, b: StateRef | None) -> bool:
        if isinstance(a, int) and isinstance(b, int) and a == b:
            return True
        ca, cb = self.content(a), self.content(b)
        return ca is not None and cb is not None and ca == cb

    def resolve(self, refs: list[StateRef]) -> StateRef:
        """The resolution of several states: one of them if it equals the result."""
        unique: list[StateRef] = []
        for r in refs:
            if not any(self.same(r, u) for u in unique):
                unique.append(r)
        if len(unique) == 1:
            return unique[0]
        key = (
            tuple(sorted(r for r in unique if isinstance(r, int)))
            if all(isinstance(r, int) for r in unique)
            else None
        )
        if key is not None and key in self._resolved:
            resolved = self._resolved[key]
        else:
            contents = [self.content(r) for r in unique]
            if any(c is None for c in contents):
                raise StateResolutionError("a state to resolve names an unknown state group")
            sets = [c for c in contents if c is not None]
            nids = {n for s in sets for n in s.values()}
            id_of = event_store.get_event_ids_for_nids(nids)
            if len(id_of) < len(nids):
                raise StateResolutionError("a state to resolve names events we do not hold")
            nid_of = {e: n for n, e in id_of.items()}
            result = resolve_state(
                self.version, [{k: id_of[n] for k, n in s.items()} for s in sets], DatabaseStateResStore()
            )
            resolved = {k: nid_of[e] for k, e in result.items()}
            if key is not None:
                self._resolved[key] = resolved
        for r in unique:
            if self.content(r) == resolved:
                return r
        return resolved


def rejections_due(nodes: Iterable[DagNode]) -> dict[str, str]:
    """Accepted events that cite a rejected auth event, directly or through another such
    event: ``event ID -> rejection reason``, as the pipeline words a step 4 failure (spec:
    "Checks performed on receipt of a PDU": auth events must not be rejected)."""
    every = {n.event_id: n for n in nodes}
    rejected = {e for e, n in every.items() if not n.accepted}
    due: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for n in every.values():
            if n.event_id in rejected:
                continue
            culprit = next((a for a in n.auth_ids if a in rejected), None)
            if culprit is not None:
                due[n.event_id] = f"auth events: auth event {culprit} was rejected"
                rejected.add(n.event_id)
                changed = True
    return due


def analyse_room(room: Room, *, apply_due_rejections: bool = False) -> RoomAnalysis:
    """Read the room's DAG and recompute its state, extremities and current state.

    ``apply_due_rejections``: recompute as if the events :func:`rejections_due` names were
    rejected (what ``dag repair`` will make of the room)."""
    version = get_room_version(room.room_version, require_supported=False)
    all_nodes = store.load_room_nodes(room, with_auth=apply_due_rejections)
    if apply_due_rejections:
        due = rejections_due(all_nodes)
        all_nodes = [
            replace(n, rejected_reason=due[n.event_id], stream_ordering=None) if n.event_id in due else n
            for n in all_nodes
        ]
    nodes = {n.event_id: n for n in all_nodes}
    timeline_nodes = [n for n in all_nodes if not n.outlier]
    order = _topological(timeline_nodes, nodes)
    gaps = store.get_backward_extremity_ids(room)
    states = _States(room, version)
    groups = {g for n in timeline_nodes for g in (n.state_group, n.state_group_before) if g is not None}
    shapes = store.get_group_shapes(groups)
    findings: list[Finding] = []

    # ---- missing prev events (gaps nobody recorded)
    missing_prev: dict[str, int] = {}
    missing_prev_children: list[str] = []
    for n in timeline_nodes:
        for p in n.prev_ids:
            prev = nodes.get(p)
            if (prev is None or prev.outlier) and p not in gaps:
                if n.depth > missing_prev.get(p, -1):
                    missing_prev[p] = n.depth
                missing_prev_children.append(n.event_id)
    if missing_prev:
        findings.append(Finding(
            "missing_prev_events",
            f"{len(missing_prev)} prev event(s) cited by {len(set(missing_prev_children))} timeline event(s) "
            "are not held and not recorded as gaps: backfill can never fetch them",
            sorted(missing_prev), len(missing_prev),
            [{"prev_event_id": p, "cited_at_depth": d} for p, d in sorted(missing_prev.items())],
        ))  # fmt: skip

    # ---- missing auth events
    outlier_nids = {n.nid for n in all_nodes if n.outlier}
    # An out-of-band membership event (an invite of our user to a room we are not in) comes
    # without its auth events: not a loss.
    membership_nids = {r.event_nid for r in store.get_membership_rows(room).values()}
    out_of_band = {
        n.event_id for n in all_nodes if n.outlier and n.type == "m.room.member" and n.nid in membership_nids
    }
    missing_auth = [
        p for p in store.find_missing_auth_events(room, limit=QUERY_LIMIT) if p[0] not in out_of_band
    ]
    if missing_auth:
        wanted = sorted({a for _, a in missing_auth})
        findings.append(Finding(
            "missing_auth_events",
            f"{len(wanted)} auth event(s) cited by {len({e for e, _ in missing_auth})} event(s) are not held",
            wanted, len(wanted), [{"event_id": e, "auth_event_id": a} for e, a in missing_auth],
        ))  # fmt: skip

    # ---- events without state / unknown state groups
    without_state = [
        n.event_id for n in timeline_nodes
        if n.state_group is None or (n.state_group_before is None and not (n.type == "m.room.create" and not n.prev_ids))
    ]  # fmt: skip
    if without_state:
        findings.append(Finding(
            "event_without_state",
            f"{len(without_state)} non-outlier event(s) have no state before or after them (Synapse #12549)",
            without_state, len(without_state),
        ))  # fmt: skip
    unknown_groups = store.find_unknown_state_groups(room, limit=QUERY_LIMIT)
    if unknown_groups:
        findings.append(Finding(
            "unknown_state_group", f"{len(unknown_groups)} event(s) name state groups that do not exist",
            [e for e, _ in unknown_groups], len(unknown_groups),
            [{"event_id": e, "state_group": g} for e, g in unknown_groups],
        ))  # fmt: skip

    # ---- foreign / dangling / mislabelled state entries
    in_use = {g for n in timeline_nodes for g in (n.state_group, n.state_group_before) if g is not None}
    if room.current_state_group is not None:
        in_use.add(room.current_state_group)
    chains = state_store.get_state_group_chains(in_use)
    in_use |= {g for chain in chains.values() for g in chain}
    bad_entries = store.find_bad_state_entries(room, groups=in_use, limit=QUERY_LIMIT)
    if bad_entries:
        kinds = sorted({b.kind for b in bad_entries})
        findings.append(Finding(
            "foreign_state",
            f"{len(bad_entries)} state entr(ies) name events that are not this room's state ({', '.join(kinds)})",
            sorted({b.event_id for b in bad_entries if b.event_id}), len(bad_entries),
            [{"where": b.where, "type": b.type, "state_key": b.state_key, "event_id": b.event_id,
              "event_room_id": b.event_room_id, "kind": b.kind} for b in bad_entries],
        ))  # fmt: skip

    # ---- recompute the state before and after every timeline event, in topological order
    recomputed: dict[str, EventState] = {}
    unrecomputable: list[str] = []
    resolution_errors: list[str] = []
    for n in order:
        prevs = [recomputed.get(p) for p in n.prev_ids]
        expected_before: StateRef | None
        note = ""
        if n.type == "m.room.create" and not n.prev_ids:
            expected_before = None
        elif n.prev_ids and all(p is not None and p.after is not None for p in prevs):
            try:
                expected_before = states.resolve(
                    [p.after for p in prevs if p is not None and p.after is not None]
                )
            except StateResolutionError as exc:
                resolution_errors.append(f"{n.event_id}: {exc}")
                expected_before = n.state_group_before
                note = "resolution failed"
        else:
            # A gap before the event (its state came from another server): what is stored stands.
            expected_before = n.state_group_before
            note = "state given"
            if expected_before is None:
                unrecomputable.append(n.event_id)
                recomputed[n.event_id] = EventState(None, None, False, False, "no state and a gap")
                continue
        if expected_before is None:
            before_ok = n.state_group_before is None
            before_ref: StateRef | None = None
        elif isinstance(expected_before, int) and expected_before == n.state_group_before:
            before_ok, before_ref = True, expected_before
        elif n.state_group_before is not None and states.same(expected_before, n.state_group_before):
            before_ok, before_ref = True, n.state_group_before
        else:
            before_ok, before_ref = False, expected_before
        base = {} if before_ref is None else (states.content(before_ref) or {})
        after_ok = False
        after_ref: StateRef
        if n.accepted and n.is_state:
            shape = shapes.get(n.state_group) if n.state_group is not None else None
            delta = {(n.type, n.state_key or ""): n.nid}
            if (
                before_ok and shape is not None and not shape.is_snapshot
                and shape.prev_group == n.state_group_before and shape.delta == delta
            ):  # fmt: skip
                after_ok, after_ref = True, n.state_group  # type: ignore[assignment]
            else:
                expected_after = {**base, **delta}
                if n.state_group is not None and states.content(n.state_group) == expected_after:
                    after_ok, after_ref = True, n.state_group
                else:
                    after_ref = expected_after
        else:
            if (before_ok and n.state_group is not None and n.state_group == n.state_group_before) or (
                n.state_group is not None and states.content(n.state_group) == base
            ):
                after_ok, after_ref = True, n.state_group
            else:
                after_ref = before_ref if before_ref is not None else {}
        recomputed[n.event_id] = EventState(before_ref, after_ref, before_ok, after_ok, note)
    mismatched = [n.event_id for n in order if n.event_id in recomputed and n.event_id not in without_state
                  and not (recomputed[n.event_id].before_ok and recomputed[n.event_id].after_ok)
                  and n.event_id not in unrecomputable]  # fmt: skip
    if mismatched:
        findings.append(Finding(
            "state_mismatch",
            f"the stored state before or after {len(mismatched)} event(s) differs from the state recomputed "
            "from their prev events",
            mismatched, len(mismatched),
            [{"event_id": e, "before_ok": recomputed[e].before_ok, "after_ok": recomputed[e].after_ok}
             for e in mismatched],
        ))  # fmt: skip

    # ---- accepted events citing rejected auth events
    rejected_auth = {e: (a, r) for e, a, r in store.find_rejected_auth_events(room, limit=QUERY_LIMIT)}
    if rejected_auth:
        findings.append(Finding(
            "rejected_auth_events", f"{len(rejected_auth)} accepted event(s) cite a rejected auth event",
            sorted(rejected_auth), len(rejected_auth),
            [{"event_id": e, "auth_event_id": a, "auth_rejected_reason": r} for e, (a, r) in rejected_auth.items()],
        ))  # fmt: skip

    # ---- forward extremities
    listed = event_store.get_forward_extremities(room)
    expected = _expected_extremities(
        nodes.values(), listed={e.event_id for e in listed},
        dropped=operations_store.get_dropped_extremities(room.room_id),
    )  # fmt: skip
    expected_ids = {n.event_id for n in expected}
    stale = []
    for ex in listed:
        node = nodes.get(ex.event_id)
        if (
            node is None
            or ex.event_id not in expected_ids
            or node.state_group != ex.state_group
            or node.nid != ex.nid
            or node.depth != ex.depth
        ):
            stale.append(ex.event_id)
    if stale or room.forward_extremity_count != len(listed):
        findings.append(Finding(
            "stale_extremities",
            f"{len(stale)} listed forward extremit(ies) are wrong (children, rejected, soft-failed, unknown or "
            f"another state group)" + (f"; the count says {room.forward_extremity_count}, the list has {len(listed)}"
                                       if room.forward_extremity_count != len(listed) else ""),
            stale, max(len(stale), 1),
        ))  # fmt: skip
    listed_ids = {e.event_id for e in listed}
    missing_ex = sorted(expected_ids - listed_ids)
    if missing_ex:
        findings.append(Finding(
            "missing_extremities", f"{len(missing_ex)} event(s) without children are not listed as forward extremities",
            missing_ex, len(missing_ex),
        ))  # fmt: skip
    if len(expected) > EXTREMITIES_THRESHOLD:
        findings.append(Finding(
            "too_many_extremities",
            f"{len(expected)} forward extremities (over {EXTREMITIES_THRESHOLD}): every new event resolves them all",
            sorted(expected_ids), len(expected),
        ))  # fmt: skip

    # ---- current state: the resolution of the extremities' states
    current_rows = state_store.get_current_state_ids(room)
    expected_current: dict[StateKey, int] | None = None
    ex_refs = [recomputed[n.event_id].after for n in expected if n.event_id in recomputed]
    if expected and all(r is not None for r in ex_refs):
        try:
            ref = states.resolve([r for r in ex_refs if r is not None])
            expected_current = states.content(ref)
        except StateResolutionError as exc:
            resolution_errors.append(f"current state: {exc}")
    if expected_current is not None:
        stored_group_state = states.content(room.current_state_group)
        diff = _diff(current_rows, expected_current)
        if diff or stored_group_state != expected_current:
            ids = event_store.get_event_ids_for_nids({n for pair in diff.values() for n in pair if n})
            findings.append(Finding(
                "current_state_mismatch",
                f"current state differs from the resolution of the forward extremities' states in {len(diff)} key(s)"
                + ("" if stored_group_state == expected_current else "; the room's current state group too"),
                sorted({ids[n] for pair in diff.values() for n in pair if n and n in ids}), max(len(diff), 1),
                [{"type": k[0], "state_key": k[1], "stored": ids.get(a) if a else None,
                  "expected": ids.get(b) if b else None} for k, (a, b) in sorted(diff.items())],
            ))  # fmt: skip
    if resolution_errors:
        findings.append(Finding(
            "state_mismatch", "state could not be recomputed: " + "; ".join(resolution_errors[:3]),
            [], len(resolution_errors),
        ))  # fmt: skip

    # ---- memberships against current state
    member_diff = _membership_diff(room, current_rows, outlier_nids)
    if member_diff:
        findings.append(Finding(
            "membership_mismatch",
            f"{len(member_diff)} membership row(s) disagree with the room's current state",
            [], len(member_diff), member_diff,
        ))  # fmt: skip

    return RoomAnalysis(
        room=room, version=version, nodes=nodes, states=recomputed, listed_extremities=listed,
        expected_extremities=expected, expected_current=expected_current, current_rows=current_rows,
        gaps=gaps, unrecomputable=unrecomputable, resolution_errors=resolution_errors,
        rejected_auth=rejected_auth, findings=_merge(findings),
    )  # fmt: skip


def _merge(findings: list[Finding]) -> list[Finding]:
    """One finding per code (the recomputation and resolution errors may both say state_mismatch)."""
    out: dict[str, Finding] = {}
    for f in findings:
        if f.code in out:
            kept = out[f.code]
            kept.message += "; " + f.message
            kept.event_ids += f.event_ids
            kept.count += f.count
            kept.details += f.details
        else:
            out[f.code] = f
    return list(out.values())


def _expected_extremities(
    nodes: Iterable[DagNode], *, listed: Set[str], dropped: Set[str] = frozenset()
) -> list[DagNode]:
    """Events that may head the room and that no accepted timeline event cites: deepest first.

    Where an event joined the timeline on a state it was given (its prev events not held: a
    remote join, a gap ``/send`` could not fill), what came before it may or may not still
    head the room: a remote (re)join makes its join the only extremity, a gap keeps the old
    ones. Older childless events are kept if ``listed`` holds them and not required otherwise.
    So are the ``dropped`` ones: an operator abandoned those branches on purpose (the admin
    API's ``DELETE .../forward_extremities``, as Synapse's), and a repair must not undo it."""
    every = list(nodes)
    in_timeline = {n.event_id for n in every if not n.outlier}
    candidates = [n for n in every if n.in_head]
    cited: set[str] = set()
    for n in every:
        if n.accepted and not n.outlier and not n.soft_failed:
            cited.update(n.prev_ids)
    resets = [
        n.stream_ordering
        for n in every
        if not n.outlier and n.stream_ordering is not None and any(p not in in_timeline for p in n.prev_ids)
    ]
    reset_at = max(resets, default=None)
    return sorted(
        (
            n
            for n in candidates
            if n.event_id not in cited
            and (n.event_id not in dropped or n.event_id in listed)
            and (reset_at is None or (n.stream_ordering or 0) >= reset_at or n.event_id in listed)
        ),
        key=lambda n: (-n.depth, n.nid),
    )


def _diff(
    a: Mapping[StateKey, int], b: Mapping[StateKey, int]
) -> dict[StateKey, tuple[int | None, int | None]]:
    return {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}


def out_of_band_rows(
    rows: Mapping[str, store.MemberRow], current: Mapping[StateKey, int], outliers: set[int]
) -> dict[str, store.MemberRow]:
    """Membership rows of events we hold outside the room's DAG: an invite or knock of our
    user in a room we are not in, or its rejection (spec: out-of-band memberships). Current
    state has no say over them."""
    return {u: r for u, r in rows.items() if r.event_nid in outliers and ("m.room.member", u) not in current}


def expected_memberships(
    room: Room, state: Mapping[StateKey, int], server_name: str
) -> dict[str, store.MemberRow]:
    """The ``room_memberships`` rows a current state implies."""
    members = {k[1]: n for k, n in state.items() if k[0] == "m.room.member"}
    infos = store.get_member_event_infos(members.values())
    rows: dict[str, store.MemberRow] = {}
    for user_id, nid in members.items():
        info = infos.get(nid)
        if info is None:
            continue
        server = user_id.split(":", 1)[1] if ":" in user_id else ""
        rows[user_id] = store.MemberRow(
            user_id, info.membership, nid, info.stream_ordering or 0, server == server_name,
            info.displayname, info.avatar_url,
        )  # fmt: skip
    return rows


def joined_counts(rows: Mapping[str, store.MemberRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for user_id, row in rows.items():
        if row.membership == "join":
            server = user_id.split(":", 1)[1] if ":" in user_id else ""
            counts[server] = counts.get(server, 0) + 1
    return counts


def _membership_diff(room: Room, current: Mapping[StateKey, int], outliers: set[int]) -> list[dict[str, Any]]:
    from dagcore.server_keys import get_server_name

    expected = expected_memberships(room, current, get_server_name())
    stored = store.get_membership_rows(room)
    for user_id in out_of_band_rows(stored, current, outliers):
        del stored[user_id]
    out: list[dict[str, Any]] = []
    for user_id in sorted(set(expected) | set(stored)):
        want, have = expected.get(user_id), stored.get(user_id)
        if want is None:
            out.append({"user_id": user_id, "problem": "row without a member event in current state"})
        elif have is None:
            out.append({"user_id": user_id, "problem": f"no row for membership {want.membership!r}"})
        elif (have.membership, have.event_nid) != (want.membership, want.event_nid):
            out.append({"user_id": user_id, "problem": f"row says {have.membership!r}, state says {want.membership!r}"
                        if have.membership != want.membership else "row names another member event"})  # fmt: skip
    counts = joined_counts(expected)
    for server, count in store.get_room_server_counts(room).items():
        if counts.get(server, 0) != count:
            out.append(
                {
                    "server_name": server,
                    "problem": f"room_servers says {count} joined, state says {counts.get(server, 0)}",
                }
            )
    for server, count in counts.items():
        if server not in store.get_room_server_counts(room):
            out.append({"server_name": server, "problem": f"no room_servers row ({count} joined)"})
    return out


# --------------------------------------------------------------------------- entry points


def check_room_dag(room_id: str) -> RoomCheck:
    """Check one room (read-only). Raises :class:`RoomUnknown`."""
    room = room_store.get_room(room_id)
    if room is None:
        raise RoomUnknown(room_id)
    return _check(room)


#: Times a room whose head moved while it was read is read again.
CHECK_ATTEMPTS = 3


def _check(room: Room) -> RoomCheck:
    """The room's findings, from reads of one moment: a snapshot on PostgreSQL; elsewhere the
    room is read again if its head moved meanwhile (a new event would look like a wrong
    extremity otherwise)."""
    for _ in range(CHECK_ATTEMPTS):
        with store.consistent_reads():
            fresh = room_store.get_room(room.room_id)
            if fresh is None:
                raise RoomUnknown(room.room_id)
            room = fresh
            analysis = analyse_room(room)
            after = store.get_room_head(room.room_id)
        if after == (room.forward_extremities, room.forward_extremity_count, room.current_state_group):
            break
    return RoomCheck(
        room_id=room.room_id,
        room_version=room.room_version,
        events=len(analysis.nodes),
        extremities=len(analysis.listed_extremities),
        findings=analysis.findings,
    )


def check_dag(
    *, room_ids: list[str] | None = None, on_room: Callable[[RoomCheck], None] | None = None
) -> DagCheckReport:
    """Check the given rooms, or every room (paged); ``on_room`` hears of each room checked.
    Raises :class:`RoomUnknown`."""
    checks: list[RoomCheck] = []

    def checked(result: RoomCheck) -> None:
        checks.append(result)
        if on_room is not None:
            on_room(result)

    if room_ids is not None:
        for room_id in room_ids:
            checked(check_room_dag(room_id))
        return DagCheckReport(checks)
    after = 0
    while True:
        page = store.list_room_ids(after_nid=after)
        if not page:
            return DagCheckReport(checks)
        for nid, room_id in page:
            room = room_store.get_room(room_id)
            if room is not None:
                checked(_check(room))
            after = nid


def run_dag_check_job(*, job: AdminJob, progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Admin job ``dag_check`` (the console's "check every room"): ``dag check --all``, its
    outcome recorded like the command's; progress is the count of rooms checked."""
    done = {"rooms_checked": 0, "rooms_with_problems": 0}

    def on_room(result: RoomCheck) -> None:
        done["rooms_checked"] += 1
        done["rooms_with_problems"] += result.status != "ok"
        if done["rooms_checked"] % 20 == 0:
            progress(dict(done))

    report = check_dag(on_room=on_room)
    do_record_dag_check(report)
    return {**done, "status": report.status, "counts": report.counts()}


def do_record_dag_check(report: DagCheckReport) -> None:
    """Keep the outcome for the dashboard and ``doctor`` (check name ``dag_check``)."""
    bad = [r for r in report.rooms if r.status != "ok"]
    operations_store.insert_check_result(
        name="dag_check",
        status=report.status,
        summary=report.summary(),
        details={
            "rooms_checked": len(report.rooms),
            "counts": report.counts(),
            "rooms": [
                {"room_id": r.room_id, "status": r.status, "codes": [f.code for f in r.findings]}
                for r in bad[:50]
            ],
        },
        ts=now_ms(),
    )


def get_latest_dag_check() -> dict[str, Any] | None:
    """The newest recorded ``dag check`` outcome (the console's DAG page), or None."""
    found = operations_store.latest_check_results(["dag_check"])
    if not found:
        return None
    result = found[0]
    return {"status": result.status, "summary": result.summary, "details": result.details, "ts": result.ts}

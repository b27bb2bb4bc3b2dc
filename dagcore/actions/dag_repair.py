"""The DAG doctor's treatment: ``manage.py dag repair ROOM [--apply] [--from-server NAME]``.

:func:`plan_repair` says exactly what a repair would change (the dry run);
:func:`do_apply_repair` makes those changes:

1. **Fetch** (before taking any lock: other servers may be slow) the auth events and prev
   events the room cites but we do not hold, from ``--from-server`` or the servers in the
   room, through the pipeline every received event takes (signatures, hashes, auth:
   ``fill_gaps`` and ``backfill``); rejections are recorded with their reasons.
2. In **one transaction under the room's write lock**: record the prev events still missing
   as gaps (backward extremities, so backfill can fetch them later); reject accepted events
   whose auth events are rejected; recompute the state before and after every timeline
   event from its prev events (new state groups where the stored ones are wrong); rebuild
   the forward extremities; set current state to the resolution of their states; rebuild
   ``room_memberships`` and ``room_servers`` from it; merge more than
   :data:`~dagcore.actions.dag_check.EXTREMITIES_THRESHOLD` extremities with an
   ``org.matrix.dummy_event`` (as Synapse does); write the undo record (:class:`DagRepair`).

Events are never deleted. What cannot be repaired (auth events nobody gives us, events with
neither a state nor a way to recompute one) is said, with ``upgrade_room`` as the way out.
:func:`do_undo_repair` puts the replaced values back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from dagcore.actions.audit import Actor, record_audit
from dagcore.actions.backfill import backfill_servers, do_backfill_from
from dagcore.actions.dag_check import (
    EXTREMITIES_THRESHOLD,
    RoomAnalysis,
    RoomUnknown,
    StateRef,
    analyse_room,
    expected_memberships,
    joined_counts,
    out_of_band_rows,
)
from dagcore.actions.extremities import DUMMY_EVENT_TYPE
from dagcore.actions.fill_gaps import GapFiller, TransientFailure
from dagcore.actions.persist_event import EventRejected, send_local_event
from dagcore.clock import now_ms
from dagcore.http.errors import MatrixError
from dagcore.models import Room
from dagcore.protocol.events import StateKey
from dagcore.protocol.room_versions import get_room_version
from dagcore.server_keys import get_server_name
from dagcore.store import dag_doctor as store
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store import transaction
from dagcore.store.dag_doctor import MemberRow
from dagcore.store.events import Extremity

logger = logging.getLogger("dagma.dag_doctor")

#: All the fetching of one repair, at most (seconds).
FETCH_BUDGET_S = 60.0
UPGRADE_HINT = (
    "the room cannot be fully repaired here; `upgrade_room` moves its members to a new room "
    "with the same state (dagcore.actions.upgrade_room)"
)


class RepairUnknown(Exception):
    """No such repair record."""


class RepairAlreadyUndone(Exception):
    pass


@dataclass
class RepairPlan:
    """What a repair of one room changes; ``as_dict`` is what ``--json`` prints and the undo
    record keeps."""

    room_id: str
    problems: list[str] = field(default_factory=list)
    fetch_auth: list[str] = field(default_factory=list)
    fetch_prev: list[str] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    gaps: dict[str, int] = field(default_factory=dict)
    rejections: dict[str, str] = field(default_factory=dict)
    state_changes: list[dict[str, Any]] = field(default_factory=list)
    extremities_before: list[str] = field(default_factory=list)
    extremities_after: list[str] = field(default_factory=list)
    current_state_changes: list[dict[str, Any]] = field(default_factory=list)
    current_group_changes: bool = False
    membership_changes: list[dict[str, Any]] = field(default_factory=list)
    room_server_changes: dict[str, list[int]] = field(default_factory=dict)
    dummy_event_sender: str | None = None
    unfixable: list[str] = field(default_factory=list)

    @property
    def dummy_event(self) -> bool:
        return len(self.extremities_after) > EXTREMITIES_THRESHOLD

    @property
    def changes_anything(self) -> bool:
        return bool(
            self.fetch_auth or self.fetch_prev or self.gaps or self.rejections or self.state_changes
            or self.extremities_before != self.extremities_after or self.current_state_changes
            or self.current_group_changes or self.membership_changes or self.room_server_changes
            or (self.dummy_event and self.dummy_event_sender)
        )  # fmt: skip

    def counts(self) -> dict[str, int]:
        return {
            "fetch": len(self.fetch_auth) + len(self.fetch_prev), "gaps": len(self.gaps),
            "rejections": len(self.rejections), "state_changes": len(self.state_changes),
            "current_state_changes": len(self.current_state_changes),
            "membership_changes": len(self.membership_changes),
            "extremities_before": len(self.extremities_before), "extremities_after": len(self.extremities_after),
            "dummy_event": int(self.dummy_event and self.dummy_event_sender is not None),
        }  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id, "problems": self.problems, "fetch_auth_events": self.fetch_auth,
            "fetch_prev_events": self.fetch_prev, "servers": self.servers, "record_gaps": self.gaps,
            "reject": self.rejections, "state_changes": self.state_changes,
            "forward_extremities": {"before": self.extremities_before, "after": self.extremities_after},
            "current_state_changes": self.current_state_changes,
            "current_state_group_changes": self.current_group_changes,
            "membership_changes": self.membership_changes, "room_server_changes": self.room_server_changes,
            "dummy_event": {"needed": self.dummy_event, "sender": self.dummy_event_sender},
            "unfixable": self.unfixable, "counts": self.counts(),
        }  # fmt: skip


@dataclass
class _Writes:
    """What the transaction writes, computed from an analysis (the plan is its description)."""

    plan: RepairPlan
    analysis: RoomAnalysis
    expected_current: dict[StateKey, int] | None
    memberships: dict[str, MemberRow] | None
    server_counts: dict[str, int] | None


# --------------------------------------------------------------------------- planning


def _get_room(room_id: str) -> Room:
    room = room_store.get_room(room_id)
    if room is None:
        raise RoomUnknown(room_id)
    return room


def _servers(room: Room, from_server: str | None) -> list[str]:
    if from_server:
        return [from_server]
    return backfill_servers(room)


def plan_repair(room_id: str, *, from_server: str | None = None, actor: Actor | None = None) -> RepairPlan:
    """The dry run: what ``do_apply_repair`` would change now. Changes nothing in the room;
    with ``actor``, the preview is recorded in the audit trail (``result="dry-run"``)."""
    with store.consistent_reads():
        room = _get_room(room_id)
        plan = _compute(room, from_server=from_server, planning=True).plan
    if actor is not None:
        record_audit(
            actor=actor, action="dag_repair", target=room_id, result="dry-run",
            params={"from_server": from_server} if from_server else {}, counts=plan.counts(),
        )  # fmt: skip
    return plan


def _compute(room: Room, *, from_server: str | None, planning: bool) -> _Writes:
    """Analyse the room as a repair would leave it and describe the changes."""
    analysis = analyse_room(room, apply_due_rejections=True)
    plan = RepairPlan(room_id=room.room_id, problems=[f.code for f in analysis.findings])
    plan.rejections = _due_rejections(analysis)
    missing_auth = next((f for f in analysis.findings if f.code == "missing_auth_events"), None)
    missing_prev = next((f for f in analysis.findings if f.code == "missing_prev_events"), None)
    plan.servers = _servers(room, from_server)
    if missing_auth is not None:
        plan.fetch_auth = list(missing_auth.event_ids)
    if missing_prev is not None:
        depths = {d["prev_event_id"]: int(d["cited_at_depth"]) for d in missing_prev.details}
        if planning and plan.servers:
            plan.fetch_prev = sorted(depths)
        plan.gaps = depths  # whatever a fetch does not bring is recorded as a gap
    # State before/after each timeline event.
    for eid, st in analysis.states.items():
        if not (st.before_ok and st.after_ok) and eid not in analysis.unrecomputable:
            node = analysis.nodes[eid]
            plan.state_changes.append({
                "event_id": eid, "before": "keep" if st.before_ok else "recompute",
                "after": "keep" if st.after_ok else "recompute",
                "stored_groups": [node.state_group_before, node.state_group],
            })  # fmt: skip
    plan.extremities_before = [e.event_id for e in analysis.listed_extremities]
    plan.extremities_after = [n.event_id for n in analysis.expected_extremities]
    expected_current = analysis.expected_current
    memberships: dict[str, MemberRow] | None = None
    server_counts: dict[str, int] | None = None
    if expected_current is not None:
        ids = event_store.get_event_ids_for_nids(
            set(expected_current.values()) | set(analysis.current_rows.values())
        )
        for key in sorted(set(expected_current) | set(analysis.current_rows)):
            a, b = analysis.current_rows.get(key), expected_current.get(key)
            if a != b:
                plan.current_state_changes.append({
                    "type": key[0], "state_key": key[1], "from": ids.get(a) if a else None,
                    "to": ids.get(b) if b else None,
                })  # fmt: skip
        current_content = _content_of_group(room.current_state_group)
        plan.current_group_changes = current_content != expected_current
        foreign = set(expected_current.values()) - store.get_event_nids_in_room(
            room, expected_current.values()
        )
        if foreign:
            plan.unfixable.append(
                f"the recomputed current state still names {len(foreign)} event(s) that are not this room's "
                "(the state came from another server with them)"
            )
        outliers = {n.nid for n in analysis.nodes.values() if n.outlier}
        memberships, server_counts = _memberships(room, expected_current, outliers)
        stored = store.get_membership_rows(room)
        for user_id in sorted(set(stored) | set(memberships)):
            have, want = stored.get(user_id), memberships.get(user_id)
            if have != want:
                plan.membership_changes.append({
                    "user_id": user_id, "from": have.membership if have else None,
                    "to": want.membership if want else None,
                })  # fmt: skip
        stored_counts = store.get_room_server_counts(room)
        for server in sorted(set(stored_counts) | set(server_counts)):
            if stored_counts.get(server, 0) != server_counts.get(server, 0) or server not in stored_counts:
                plan.room_server_changes[server] = [
                    stored_counts.get(server, 0),
                    server_counts.get(server, 0),
                ]
    elif analysis.expected_extremities:
        plan.unfixable.append(
            "the current state cannot be recomputed: " + "; ".join(analysis.resolution_errors[:3])
        )
    if analysis.unrecomputable:
        plan.unfixable.append(
            f"{len(analysis.unrecomputable)} event(s) have no stored state and prev events we do not hold, "
            f"so their state cannot be recomputed: {', '.join(analysis.unrecomputable[:5])}"
        )
    if missing_auth is not None and not plan.servers:
        plan.unfixable.append(
            f"{missing_auth.count} missing auth event(s) and no other server to fetch them from "
            "(give one with --from-server)"
        )
    elif missing_auth is not None and not planning:
        plan.unfixable.append(
            f"{missing_auth.count} missing auth event(s) that {', '.join(plan.servers)} did not give us "
            "(try another with --from-server)"
        )
    if plan.dummy_event:
        plan.dummy_event_sender = _dummy_sender(memberships or {})
        if plan.dummy_event_sender is None:
            plan.unfixable.append(
                f"{len(plan.extremities_after)} forward extremities and no local member to send the "
                f"{DUMMY_EVENT_TYPE} that merges them"
            )
    if plan.unfixable:
        plan.unfixable.append(UPGRADE_HINT)
    return _Writes(plan, analysis, expected_current, memberships, server_counts)


def _due_rejections(analysis: RoomAnalysis) -> dict[str, str]:
    """The rejections the analysis assumed: nodes rejected in it but accepted in the store."""
    stored = store.get_nodes_by_ids(
        [e for e, n in analysis.nodes.items() if n.rejected_reason is not None], with_auth=False
    )
    return {
        e: str(analysis.nodes[e].rejected_reason)
        for e, n in stored.items()
        if n.rejected_reason is None and analysis.nodes[e].rejected_reason is not None
    }


def _content_of_group(group: int | None) -> dict[StateKey, int] | None:
    if group is None:
        return None
    try:
        return state_store.get_state_ids(group)
    except LookupError:
        return None


def _memberships(
    room: Room, current: dict[StateKey, int], outliers: set[int]
) -> tuple[dict[str, MemberRow], dict[str, int]]:
    """The membership rows of ``current``: unchanged rows kept as stored (their stream positions
    are when /sync saw them change), changed ones at their member event's position, and
    out-of-band ones (an invite to a room we are not in) left alone."""
    wanted = expected_memberships(room, current, get_server_name())
    stored = store.get_membership_rows(room)
    rows: dict[str, MemberRow] = dict(out_of_band_rows(stored, current, outliers))
    for user_id, row in wanted.items():
        have = stored.get(user_id)
        if have is not None and (have.membership, have.event_nid) == (row.membership, row.event_nid):
            rows[user_id] = have
        elif row.stream_ordering == 0 and have is not None:
            rows[user_id] = MemberRow(**{**_row_dict(row), "stream_ordering": have.stream_ordering})
        else:
            rows[user_id] = row
    return rows, joined_counts(rows)


def _row_dict(row: MemberRow) -> dict[str, Any]:
    return {
        "user_id": row.user_id, "membership": row.membership, "event_nid": row.event_nid,
        "stream_ordering": row.stream_ordering, "is_local": row.is_local, "displayname": row.displayname,
        "avatar_url": row.avatar_url,
    }  # fmt: skip


def _dummy_sender(memberships: dict[str, MemberRow]) -> str | None:
    local = sorted(u for u, r in memberships.items() if r.is_local and r.membership == "join")
    return local[0] if local else None


# --------------------------------------------------------------------------- applying


@dataclass
class RepairOutcome:
    plan: RepairPlan
    repair_id: int | None
    fetched: int
    dummy_event_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "repair_id": self.repair_id, "fetched_events": self.fetched, "dummy_event_id": self.dummy_event_id,
            "plan": self.plan.as_dict(),
        }  # fmt: skip


def do_apply_repair(room_id: str, *, actor: Actor, from_server: str | None = None) -> RepairOutcome:
    """Fetch what is missing, then repair the room in one transaction (module docstring)."""
    room = _get_room(room_id)
    params = {"from_server": from_server} if from_server else {}
    try:
        fetched = _fetch_missing(room, from_server=from_server)
        with transaction.atomic():
            room_store.lock_room_for_writing(room_id)
            room = _get_room(room_id)
            outcome = _apply(room, actor=actor, from_server=from_server, fetched=fetched)
    except Exception as exc:
        record_audit(actor=actor, action="dag_repair", target=room_id, params=params, result="failed",
                     error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        raise
    record_audit(
        actor=actor, action="dag_repair", target=room_id,
        params={**params, "repair_id": outcome.repair_id}, counts={**outcome.plan.counts(), "fetched": fetched},
    )  # fmt: skip
    return outcome


def _fetch_missing(room: Room, *, from_server: str | None) -> int:
    """Ask other servers for the auth and prev events the room cites but we lack; each event
    goes through the receiving pipeline. Returns how many events were stored."""
    analysis = analyse_room(room)
    missing_auth = next((f for f in analysis.findings if f.code == "missing_auth_events"), None)
    missing_prev = next((f for f in analysis.findings if f.code == "missing_prev_events"), None)
    if missing_auth is None and missing_prev is None:
        return 0
    version = get_room_version(room.room_version, require_supported=False)
    deadline = time.monotonic() + FETCH_BUDGET_S
    before = len(analysis.nodes)
    for server in _servers(room, from_server):
        if missing_auth is not None:
            citing = sorted({d["event_id"] for d in missing_auth.details})
            filler = GapFiller(origin=server, room_id=room.room_id, version=version, deadline=deadline)
            for stored in event_store.get_events_by_ids(citing).values():
                try:
                    filler.ensure_auth_events(stored.event)
                except (TransientFailure, EventRejected) as exc:
                    logger.info(
                        "dag repair: auth events of %s from %s: %s", stored.event_id, server[:255], exc
                    )
        if missing_prev is not None:
            wanted = sorted({d["prev_event_id"] for d in missing_prev.details})
            do_backfill_from(room, server=server, event_ids=wanted, deadline=deadline)
        analysis = analyse_room(room)
        missing_auth = next((f for f in analysis.findings if f.code == "missing_auth_events"), None)
        missing_prev = next((f for f in analysis.findings if f.code == "missing_prev_events"), None)
        if (missing_auth is None and missing_prev is None) or time.monotonic() > deadline:
            break
    return len(analysis.nodes) - before


def _apply(room: Room, *, actor: Actor, from_server: str | None, fetched: int) -> RepairOutcome:
    # Gaps first: the recomputation then treats those events' state as given.
    first = _compute(room, from_server=from_server, planning=False)
    if first.plan.gaps:
        store.add_backward_extremities(room, first.plan.gaps)
    writes = _compute(room, from_server=from_server, planning=False) if first.plan.gaps else first
    plan = writes.plan
    plan.gaps = first.plan.gaps
    plan.fetch_auth, plan.fetch_prev = first.plan.fetch_auth, first.plan.fetch_prev
    analysis = writes.analysis
    if not plan.changes_anything:
        return RepairOutcome(plan=plan, repair_id=None, fetched=fetched, dummy_event_id=None)
    undo: dict[str, Any] = {"gaps_added": sorted(plan.gaps)}
    head = store.get_room_head(room.room_id)
    assert head is not None
    undo["head"] = list(head)
    undo["current_state"] = [[t, s, n] for (t, s), n in sorted(analysis.current_rows.items())]
    undo["memberships"] = [_row_dict(r) for r in store.get_membership_rows(room).values()]
    undo["room_servers"] = store.get_room_server_counts(room)
    touched: dict[int, list[Any]] = {}
    # As stored (the analysis holds the due rejections already applied).
    stored_nodes = {
        n.nid: n
        for n in store.get_nodes_by_ids(
            [c["event_id"] for c in plan.state_changes] + list(plan.rejections), with_auth=False
        ).values()
    }

    def remember(nid: int) -> None:
        if nid not in touched:
            old = stored_nodes[nid]
            touched[nid] = [
                nid,
                old.state_group_before,
                old.state_group,
                old.rejected_reason,
                old.stream_ordering,
            ]

    # 1. Rejections.
    for event_id, reason in plan.rejections.items():
        node = analysis.nodes[event_id]
        remember(node.nid)
        store.set_event_rejection(nid=node.nid, rejected_reason=reason, stream_ordering=None)

    # 2. State groups of the events whose stored state is wrong, in topological order.
    group_of: dict[int, int] = {}  # id(recomputed state dict) -> new group

    def group_for(ref: StateRef | None, near: int | None) -> int | None:
        if ref is None or isinstance(ref, int):
            return ref
        key = id(ref)
        if key not in group_of:
            group_of[key] = state_store.create_state_group_for_state(room, state=ref, near_group=near)
        return group_of[key]

    changed = {c["event_id"] for c in plan.state_changes}
    new_after: dict[str, int | None] = {}
    for event_id, st in analysis.states.items():  # insertion order is topological
        node = analysis.nodes[event_id]
        near: int | None = None
        for p in node.prev_ids:
            near = new_after.get(p) or (analysis.nodes[p].state_group if p in analysis.nodes else None)
            if near is not None:
                break
        before = group_for(st.before, near)
        after = group_for(st.after, before)
        new_after[event_id] = after
        if event_id in changed and (before, after) != (node.state_group_before, node.state_group):
            remember(node.nid)
            store.set_event_state_groups(nid=node.nid, state_group_before=before, state_group=after)

    # 3. Forward extremities, current state group and rows, memberships.
    extremities = [
        Extremity(n.nid, n.event_id, n.depth, new_after.get(n.event_id, n.state_group))
        for n in analysis.expected_extremities
    ]
    current_group = room.current_state_group
    if writes.expected_current is not None and (plan.current_group_changes or plan.current_state_changes):
        # Always a new group, even when one with this content exists: running processes cache
        # what they read of current state by (room, current state group), and entries read
        # while the rows were wrong must not outlive the repair.
        groups = [e.state_group for e in extremities if e.state_group is not None]
        near = next((g for g in groups if _content_of_group(g) == writes.expected_current), None)
        current_group = (
            state_store.create_state_group(room, prev_group=near, delta={})
            if near is not None
            else state_store.create_state_group_for_state(
                room, state=writes.expected_current, near_group=groups[0] if groups else None
            )
        )
        if plan.current_state_changes:
            store.replace_current_state(room, writes.expected_current)
    room_store.set_room_head(
        room, forward_extremities=event_store.encode_forward_extremities(extremities),
        extremity_count=len(extremities), current_state_group=current_group,
    )  # fmt: skip
    if writes.memberships is not None and plan.membership_changes:
        store.replace_memberships(room, writes.memberships)
    if writes.server_counts is not None and plan.room_server_changes:
        store.replace_room_server_counts(room, writes.server_counts)

    # 4. Too many extremities: one dummy event cites them (send_local_event cites at most 20).
    dummy_event_id: str | None = None
    if plan.dummy_event and plan.dummy_event_sender is not None:
        try:
            sent = send_local_event(
                room_id=room.room_id, sender=plan.dummy_event_sender, event_type=DUMMY_EVENT_TYPE, content={}
            )
            dummy_event_id = sent.event.event_id
        except MatrixError as exc:
            plan.unfixable.append(f"the {DUMMY_EVENT_TYPE} was refused: {exc}")

    undo["events"] = list(touched.values())
    record = store.insert_repair_record(
        room_id=room.room_id, actor=actor.user_id, created_ts=now_ms(),
        plan={**plan.as_dict(), "dummy_event_id": dummy_event_id, "fetched_events": fetched}, undo=undo,
    )  # fmt: skip
    return RepairOutcome(plan=plan, repair_id=int(record.id), fetched=fetched, dummy_event_id=dummy_event_id)


# --------------------------------------------------------------------------- undo


def do_undo_repair(repair_id: int, *, actor: Actor) -> dict[str, Any]:
    """Put back what repair ``repair_id`` replaced (events it fetched or sent stay)."""
    record = store.get_repair_record(repair_id)
    if record is None:
        raise RepairUnknown(repair_id)
    if record.undone_ts is not None:
        raise RepairAlreadyUndone(repair_id)
    undo = record.undo
    with transaction.atomic():
        room_store.lock_room_for_writing(record.room_id)
        room = _get_room(record.room_id)
        for nid, before, after, reason, stream in undo.get("events", []):
            store.set_event_state_groups(nid=nid, state_group_before=before, state_group=after)
            store.set_event_rejection(nid=nid, rejected_reason=reason, stream_ordering=stream)
        extremities, count, group = undo["head"]
        room_store.set_room_head(
            room, forward_extremities=extremities, extremity_count=count, current_state_group=group
        )
        store.replace_current_state(room, {(t, s): n for t, s, n in undo.get("current_state", [])})
        store.replace_memberships(room, {r["user_id"]: MemberRow(**r) for r in undo.get("memberships", [])})
        store.replace_room_server_counts(room, dict(undo.get("room_servers", {})))
        store.remove_backward_extremities(room, undo.get("gaps_added", []))
        store.mark_repair_undone(record, ts=now_ms())
    counts = {"events": len(undo.get("events", [])), "gaps_removed": len(undo.get("gaps_added", []))}
    record_audit(actor=actor, action="dag_repair_undo", target=record.room_id, params={"repair_id": repair_id},
                 counts=counts)  # fmt: skip
    return {"repair_id": repair_id, "room_id": record.room_id, **counts}

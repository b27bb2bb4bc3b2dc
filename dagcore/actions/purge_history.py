"""History purge: remove a room's older timeline (issue 14; Synapse's Purge History API).

Synapse's semantics, event by event in the purged range (before the boundary's depth):
non-state events of remote senders — and of local ones with ``delete_local_events`` — are
deleted, with their prev/auth edges, federation outbox entries and client transaction IDs;
every other event leaves the timeline but stays stored as an outlier: state events (state
groups and auth chains name them) and, by default, local users' events (they may be the
only copy anywhere). What always stays in the timeline: the latest event and the forward
extremities (the next event's prev_events); the current state and its auth chain are never
deleted. Afterwards: state groups no event needs any more are deleted, backward extremities
whose gap was purged away dropped, the prev events the new oldest events cite recorded as
gaps (as Synapse: ``dag check`` then sees a known gap, not a lost event; a federated room may
backfill them again from another server), and the room's cached unread counts reset.

Receipts are kept: a receipt is a user's read position, which its stream position still
orders after its event is gone; dropping it would reset the user's unread counts.

Preview first (:func:`get_purge_preview`): its counts come from the selections the action
runs, bounded by a :class:`~dagcore.store.purge.PurgeBoundary` (a topological key plus the
stream position, event nid and protected events at the preview) that the action receives,
so it never removes more than the preview counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from dagcore.actions.audit import Actor, record_audit
from dagcore.clock import now_ms
from dagcore.http.errors import MatrixError
from dagcore.models import AdminJob
from dagcore.server_keys import get_server_name
from dagcore.store import events as event_store
from dagcore.store import purge as store
from dagcore.store import rooms as room_store
from dagcore.store import timeline, transaction
from dagcore.store.purge import PurgeBoundary
from dagcore.store.streams import get_stream_position

#: The stream part of a boundary key: before *every* event of the boundary's depth, so the
#: boundary event and the others at its depth stay (Synapse's purge keeps that depth too).
BEFORE_DEPTH = -(2**62)

_DAYS = re.compile(r"^\s*(\d+)\s*(d|days?)(\s+ago)?\s*$", re.IGNORECASE)
_HOURS = re.compile(r"^\s*(\d+)\s*(h|hours?)(\s+ago)?\s*$", re.IGNORECASE)


def parse_before(value: str, *, now: int | None = None) -> tuple[str, int | str]:
    """``("ts", ms)`` for a date (``2026-11-01``, an ISO date-time, ``30d``, ``30 days ago``,
    ``12h``) or ``("event", event_id)`` for an event ID (``$...``)."""
    text = value.strip()
    if not text:
        raise MatrixError(400, "M_INVALID_PARAM", "'before' is empty: give a date, '30d' or an event ID")
    if text.startswith("$"):
        return "event", text
    base = now_ms() if now is None else now
    for pattern, unit in ((_DAYS, 86_400_000), (_HOURS, 3_600_000)):
        match = pattern.match(text)
        if match:
            return "ts", base - int(match.group(1)) * unit
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise MatrixError(
            400, "M_INVALID_PARAM", f"Cannot read {value!r}: give YYYY-MM-DD, an ISO date-time, '30d', "
            "'30 days ago' or an event ID"
        ) from None  # fmt: skip
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return "ts", int(parsed.timestamp() * 1000)


@dataclass(frozen=True)
class PurgePreview:
    room_id: str
    boundary: PurgeBoundary
    #: The event the purge stops at (kept), when there is one.
    boundary_event_id: str | None
    counts: store.PurgeCounts

    def as_json(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "boundary": self.boundary.as_json(),
            "boundary_event_id": self.boundary_event_id,
            "counts": asdict(self.counts),
        }


def get_purge_preview(
    *,
    room_id: str,
    before_ts: int | None = None,
    before_event_id: str | None = None,
    delete_local_events: bool = False,
) -> PurgePreview:
    """What a purge of ``room_id`` before a time or an event would remove (nothing changes)."""
    if (before_ts is None) == (before_event_id is None):
        raise MatrixError(400, "M_INVALID_PARAM", "Give exactly one of a time and an event ID")
    room = room_store.get_room(room_id)
    if room is None:
        raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
    max_stream = get_stream_position("events")
    max_nid = store.get_max_event_nid()
    key: tuple[int, int] | None
    boundary_event_id: str | None
    if before_event_id is not None:
        event = timeline.get_room_event(room, before_event_id)
        if event is None:
            # Synapse answers 400 for an event of another room (or outside the timeline), 404 for none.
            known = event_store.get_event_by_id(before_event_id) is not None
            raise MatrixError(
                400 if known else 404, "M_UNKNOWN" if known else "M_NOT_FOUND",
                f"Event {before_event_id} is not in the timeline of {room_id}",
            )  # fmt: skip
        key, boundary_event_id = (event.depth, BEFORE_DEPTH), event.event_id
    else:
        assert before_ts is not None
        # Synapse turns a time into the first event at or after it: what comes before goes.
        first_after = timeline.get_event_closest_to_ts(
            room, ts=before_ts, direction="f", max_stream=max_stream
        )
        if first_after is None:
            key, boundary_event_id = None, None
        else:
            key, boundary_event_id = (first_after.depth, BEFORE_DEPTH), first_after.event_id
    boundary = PurgeBoundary(
        room_id=room_id, before_key=key, max_stream=max_stream, max_nid=max_nid,
        delete_local_events=delete_local_events, server_name=get_server_name(),
        protected_nids=tuple(sorted(store.get_protected_nids(room))),
    )  # fmt: skip
    return PurgePreview(
        room_id=room_id, boundary=boundary, boundary_event_id=boundary_event_id,
        counts=store.count_purge(room, boundary),
    )  # fmt: skip


def do_purge_history(
    *, boundary: PurgeBoundary, progress: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, int]:
    """Purge what ``boundary`` (from a preview) selects, a batch per transaction; the counts."""
    totals = {
        "events": 0, "state_events": 0, "local_events_kept": 0, "state_groups": 0, "backward_extremities": 0,
        "gaps": 0,
    }  # fmt: skip
    while True:
        with transaction.atomic():
            room_store.lock_room_for_writing(boundary.room_id)
            room = room_store.get_room_for_update(boundary.room_id)
            if room is None:
                raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {boundary.room_id}")
            deleted, hidden_state, hidden_local = store.purge_batch(room, boundary)
        totals["events"] += deleted
        totals["state_events"] += hidden_state
        totals["local_events_kept"] += hidden_local
        if progress is not None:
            progress(dict(totals))
        if deleted < store.BATCH and hidden_state + hidden_local < store.BATCH:
            break
    with transaction.atomic():
        room_store.lock_room_for_writing(boundary.room_id)
        room = room_store.get_room_for_update(boundary.room_id)
        assert room is not None
        totals["state_groups"] = store.delete_state_groups(store.get_unneeded_state_groups(room))
        totals["backward_extremities"] = store.drop_unreachable_backward_extremities(room)
        totals["gaps"] = store.record_purge_gaps(room)
        store.reset_unread_counters(room)
    return totals


def check_purge_history(*, preview: PurgePreview, actor: Actor) -> dict[str, int]:
    """Purge as previewed, with its audit entry (the counts, or the failure)."""
    params = {**preview.boundary.as_json(), "boundary_event_id": preview.boundary_event_id}
    try:
        counts = do_purge_history(boundary=preview.boundary)
    except Exception as exc:
        record_audit(actor=actor, action="purge_history", target=preview.room_id, params=params,
                     result="failed", error=str(exc)[:2000])  # fmt: skip
        raise
    record_audit(actor=actor, action="purge_history", target=preview.room_id, params=params, counts=counts)
    return counts


def record_purge_dry_run(*, preview: PurgePreview, actor: Actor) -> None:
    record_audit(
        actor=actor, action="purge_history", target=preview.room_id,
        params={**preview.boundary.as_json(), "boundary_event_id": preview.boundary_event_id},
        counts=asdict(preview.counts), result="dry-run",
    )  # fmt: skip


def check_room_integrity(*, room_id: str) -> list[str]:
    room = room_store.get_room(room_id)
    if room is None:
        raise MatrixError(404, "M_NOT_FOUND", f"Unknown room {room_id}")
    return store.check_room_integrity(room)


def run_purge_history_job(*, job: AdminJob, progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Admin job ``purge_history``: params hold the preview's boundary (``boundary``)."""
    boundary = PurgeBoundary.from_json(job.params["boundary"])
    actor = Actor(user_id=job.created_by, via=str(job.params.get("via") or "api"))
    params = {**boundary.as_json(), "job_id": job.job_id}
    # A failure is audited by the job runner (``job:purge_history``).
    counts = do_purge_history(boundary=boundary, progress=progress)
    record_audit(actor=actor, action="purge_history", target=boundary.room_id, params=params, counts=counts)
    return counts

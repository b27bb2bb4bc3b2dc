"""History purge: the selection of a room's older timeline events, and their removal.

See ``dagcore.actions.purge_history`` for what is kept and why. Everything here is bounded
by a :class:`PurgeBoundary` fixed when the operator previews the purge: a topological key
(events strictly before it), the events stream position and the highest event nid at the
preview, so an event that arrives (or is backfilled) afterwards is never selected, and the
action removes at most what the preview counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from django.db.models import Max, Q, QuerySet

from dagcore.models import (
    BackwardExtremity,
    ClientTxn,
    CurrentStateEvent,
    Room,
    RoomMembership,
    StateGroup,
    StateGroupEntry,
    UnreadCounter,
)
from dagcore.models import Event as EventRow
from dagcore.store.sql import fetch_rows, in_list

#: Events removed (or taken out of the timeline) per transaction: the room's write lock is
#: held for one batch at a time, so the room keeps working during a long purge.
BATCH = 500


@dataclass(frozen=True)
class PurgeBoundary:
    """What a purge may touch, fixed at the preview (JSON-able: it travels in a job's params)."""

    room_id: str
    #: ``(depth, stream_ordering)``: events strictly before it; ``None``: up to the room's end.
    before_key: tuple[int, int] | None
    #: The events stream position and highest event nid at the preview.
    max_stream: int
    max_nid: int
    delete_local_events: bool
    server_name: str
    #: The forward extremities and latest event at the preview: still kept when newer events
    #: have come since (the action's protected events are these and the current ones).
    protected_nids: tuple[int, ...] = ()

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["before_key"] = list(self.before_key) if self.before_key is not None else None
        data["protected_nids"] = list(self.protected_nids)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PurgeBoundary:
        key = data.get("before_key")
        return cls(
            room_id=str(data["room_id"]),
            before_key=(int(key[0]), int(key[1])) if key is not None else None,
            max_stream=int(data["max_stream"]),
            max_nid=int(data["max_nid"]),
            delete_local_events=bool(data["delete_local_events"]),
            server_name=str(data["server_name"]),
            protected_nids=tuple(int(n) for n in data.get("protected_nids") or ()),
        )


def get_max_event_nid() -> int:
    return int(EventRow.objects.aggregate(m=Max("id"))["m"] or 0)


def get_protected_nids(room: Room, boundary: PurgeBoundary | None = None) -> set[int]:
    """Timeline events a purge never touches: the forward extremities and the latest event
    (now, and at the preview when a ``boundary`` is given)."""
    protected = {int(row[0]) for row in json.loads(room.forward_extremities or "[]")}
    if boundary is not None:
        protected.update(boundary.protected_nids)
    latest = (
        EventRow.objects.filter(room=room, outlier=False, stream_ordering__isnull=False)
        .order_by("-stream_ordering")
        .values_list("id", flat=True)
        .first()
    )
    if latest is not None:
        protected.add(int(latest))
    return protected


def _in_range(room: Room, boundary: PurgeBoundary) -> QuerySet[EventRow]:
    """The room's events inside the boundary: before its key, known at the preview."""
    qs = EventRow.objects.filter(room=room, id__lte=boundary.max_nid).filter(
        Q(stream_ordering__isnull=True) | Q(stream_ordering__lte=boundary.max_stream)
    )
    if boundary.before_key is not None:
        depth, stream = boundary.before_key
        qs = qs.filter(Q(depth__lt=depth) | Q(depth=depth, stream_ordering__lt=stream))
    return qs.exclude(id__in=sorted(get_protected_nids(room, boundary)))


def _to_delete(room: Room, boundary: PurgeBoundary) -> QuerySet[EventRow]:
    """Non-state events in range (timeline events, and outliers: no state or auth needs a
    non-state event), of remote senders unless ``delete_local_events``."""
    qs = _in_range(room, boundary).filter(state_key__isnull=True)
    if not boundary.delete_local_events:
        qs = qs.exclude(sender__endswith=":" + boundary.server_name)
    return qs


def _to_hide(room: Room, boundary: PurgeBoundary) -> QuerySet[EventRow]:
    """Timeline events in range that stay stored but leave the timeline: state events (state
    groups and auth chains name them) and, without ``delete_local_events``, local events."""
    qs = _in_range(room, boundary).filter(outlier=False, stream_ordering__isnull=False)
    if boundary.delete_local_events:
        return qs.filter(state_key__isnull=False)
    return qs.filter(Q(state_key__isnull=False) | Q(sender__endswith=":" + boundary.server_name))


@dataclass(frozen=True)
class PurgeCounts:
    #: Non-state events removed.
    events: int
    #: State events taken out of the timeline (kept as outliers: state and auth need them).
    state_events: int
    #: Local users' events taken out of the timeline but kept (without ``delete_local_events``).
    local_events_kept: int


def count_purge(room: Room, boundary: PurgeBoundary) -> PurgeCounts:
    """What :func:`purge_batch` calls would do, from the same selections."""
    hidden = _to_hide(room, boundary)
    return PurgeCounts(
        events=_to_delete(room, boundary).count(),
        state_events=hidden.filter(state_key__isnull=False).count(),
        local_events_kept=hidden.filter(state_key__isnull=True).count(),
    )


def purge_batch(room: Room, boundary: PurgeBoundary, *, limit: int = BATCH) -> tuple[int, int, int]:
    """Remove up to ``limit`` selected events, then take up to ``limit`` out of the timeline
    (oldest first): ``(deleted, state events hidden, other (local) events hidden)``.

    Call inside ``transaction.atomic()`` after ``lock_room_for_writing``. Deleted events go
    with their edges and the rows that point at them (federation outbox entries, client
    transaction IDs); hidden ones become outliers without state group references, as
    Synapse's purge does with the events it keeps.
    """
    delete = list(_to_delete(room, boundary).order_by("depth", "id").values_list("id", "event_id")[:limit])
    if delete:
        ClientTxn.objects.filter(event_id__in=[eid for _nid, eid in delete]).delete()
        # The ORM's delete follows the CASCADE foreign keys: prev/auth edges and outbox rows.
        EventRow.objects.filter(id__in=[nid for nid, _eid in delete]).delete()
    hide = list(_to_hide(room, boundary).order_by("depth", "id").values_list("id", "state_key")[:limit])
    if hide:
        EventRow.objects.filter(id__in=[nid for nid, _skey in hide]).update(
            outlier=True, state_group=None, state_group_before=None
        )
    hidden_state = sum(1 for _nid, skey in hide if skey is not None)
    return len(delete), hidden_state, len(hide) - hidden_state


def record_purge_gaps(room: Room) -> int:
    """Record as backward extremities the prev events that remaining timeline events cite and
    that are gone or out of the timeline (Synapse does too): the room's history is known to
    end there, and ``dag check`` sees a gap, not a lost event. Returns how many."""
    rows = fetch_rows(
        "SELECT ee.prev_event_id, MAX(e.depth) FROM event_edges ee JOIN events e ON e.id = ee.event_id "
        "WHERE e.room_id = %s AND NOT e.outlier AND e.stream_ordering IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM events p WHERE p.event_id = ee.prev_event_id AND NOT p.outlier) "
        "AND NOT EXISTS (SELECT 1 FROM backward_extremities b WHERE b.room_id = e.room_id "
        "AND b.event_id = ee.prev_event_id) GROUP BY ee.prev_event_id",
        [room.pk],
    )
    for event_id, depth in rows:
        BackwardExtremity.objects.get_or_create(room=room, event_id=event_id, defaults={"depth": int(depth)})
    return len(rows)


def drop_unreachable_backward_extremities(room: Room) -> int:
    """Backward extremities cited by no remaining timeline event: their gap was purged away."""
    params: list[Any] = [room.pk, room.pk]
    rows = fetch_rows(
        "SELECT b.id FROM backward_extremities b WHERE b.room_id = %s AND NOT EXISTS ("
        "SELECT 1 FROM event_edges ee JOIN events e ON e.id = ee.event_id "
        "WHERE ee.prev_event_id = b.event_id AND e.room_id = %s AND NOT e.outlier)",
        params,
    )
    ids = [int(r[0]) for r in rows]
    if ids:
        BackwardExtremity.objects.filter(id__in=ids).delete()
    return len(ids)


def _chains_of(groups: Iterable[int]) -> set[int]:
    wanted = sorted({g for g in groups if g is not None})
    out: set[int] = set()
    for start in range(0, len(wanted), 500):
        for chain in StateGroup.objects.filter(id__in=wanted[start : start + 500]).values_list(
            "chain", flat=True
        ):
            out.update(int(g) for g in json.loads(chain))
    return out


def get_unneeded_state_groups(room: Room) -> list[int]:
    """State groups of the room no event, the current state or another group's chain needs."""
    referenced: set[int] = set()
    for before, after in (
        EventRow.objects.filter(room=room)
        .filter(Q(state_group__isnull=False) | Q(state_group_before__isnull=False))
        .values_list("state_group_before", "state_group")
    ):
        referenced.update(g for g in (before, after) if g is not None)
    if room.current_state_group is not None:
        referenced.add(room.current_state_group)
    needed = _chains_of(referenced)
    return sorted(set(StateGroup.objects.filter(room=room).values_list("id", flat=True)) - needed)


def delete_state_groups(groups: Sequence[int]) -> int:
    for start in range(0, len(groups), 500):
        chunk = list(groups[start : start + 500])
        StateGroupEntry.objects.filter(group_id__in=chunk).delete()
        StateGroup.objects.filter(id__in=chunk).delete()
    return len(groups)


def reset_unread_counters(room: Room) -> None:
    """Cached unread counts may count removed events: drop them (``/sync`` recounts lazily)."""
    UnreadCounter.objects.filter(room=room).delete()


# --------------------------------------------------------------------------- integrity


def check_room_integrity(room: Room) -> list[str]:
    """What a purge must never break, as readable problems (empty: all holds).

    Forward extremities and the latest event are timeline events; the current state's events
    and their auth events exist; every state group a remaining event or the current state
    uses exists with its whole chain, and every state entry of those names a stored event.
    """
    problems: list[str] = []
    extremities = [int(row[0]) for row in json.loads(room.forward_extremities or "[]")]
    found = set(
        EventRow.objects.filter(id__in=extremities, outlier=False, stream_ordering__isnull=False).values_list(
            "id", flat=True
        )
    )
    problems += [f"forward extremity nid {n} is not a timeline event" for n in extremities if n not in found]
    state_nids = list(CurrentStateEvent.objects.filter(room=room).values_list("event_id", flat=True))
    state_ids = list(EventRow.objects.filter(id__in=state_nids).values_list("event_id", flat=True))
    if len(state_ids) != len(set(state_nids)):
        problems.append("a current state event is missing")
    if not CurrentStateEvent.objects.filter(room=room, type="m.room.create", state_key="").exists():
        problems.append("the room has no m.room.create in its current state")
    params: list[Any] = []
    if state_ids:
        sql = (
            "SELECT DISTINCT a.auth_event_id FROM event_auth_edges a JOIN events e ON e.id = a.event_id "
            f"WHERE {in_list('e.event_id', state_ids, params)} "
            "AND NOT EXISTS (SELECT 1 FROM events x WHERE x.event_id = a.auth_event_id)"
        )
        problems += [f"auth event {r[0]} of the current state is missing" for r in fetch_rows(sql, params)]
    member_missing = RoomMembership.objects.filter(room=room).exclude(
        event_id__in=EventRow.objects.filter(room=room).values("id")
    )
    if member_missing.exists():
        problems.append("a membership row points at a missing event")
    referenced: set[int] = set()
    for before, after in EventRow.objects.filter(room=room, outlier=False).values_list(
        "state_group_before", "state_group"
    ):
        referenced.update(g for g in (before, after) if g is not None)
    if room.current_state_group is not None:
        referenced.add(room.current_state_group)
    present = dict(StateGroup.objects.filter(id__in=sorted(referenced)).values_list("id", "chain"))
    problems += [f"state group {g} is missing" for g in sorted(referenced - set(present))]
    chains = {int(g) for chain in present.values() for g in json.loads(chain)}
    existing = set(StateGroup.objects.filter(id__in=sorted(chains)).values_list("id", flat=True))
    problems += [f"state group {g} of a chain is missing" for g in sorted(chains - existing)]
    entry_nids = set(
        StateGroupEntry.objects.filter(group_id__in=sorted(existing))
        .exclude(event_nid=0)
        .values_list("event_nid", flat=True)
    )
    stored: set[int] = set()
    wanted = sorted(entry_nids)
    for start in range(0, len(wanted), 1000):
        stored.update(
            EventRow.objects.filter(id__in=wanted[start : start + 1000]).values_list("id", flat=True)
        )
    problems += [f"state entry names missing event nid {n}" for n in sorted(entry_nids - stored)][:20]
    return problems

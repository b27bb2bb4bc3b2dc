"""Backward extremities (the gaps in a room's history) and the positions of backfilled events.

See ``dagcore.actions.backfill`` for how they are used; ``BackwardExtremity`` for what a row means.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import F

from dagcore.models import BackwardExtremity, Room
from dagcore.models import Event as EventRow
from dagcore.store.sql import fetch_rows
from dagcore.store.streams import advance_stream

#: The counter of backfilled positions: ``events.stream_ordering`` of backfilled events is its
#: position negated (see ``reserve_backfill_positions``). Not a sync stream: no token carries it.
BACKFILL_COUNTER = "events_backfill"


@dataclass(frozen=True)
class Gap:
    event_id: str
    depth: int
    attempts: int


def get_missing_timeline_prevs(room: Room, prev_ids: Sequence[str]) -> list[str]:
    """Those of ``prev_ids`` that are not in the room's timeline (unknown, or only an outlier)."""
    if not prev_ids:
        return []
    held = set(
        EventRow.objects.filter(room=room, event_id__in=list(prev_ids), outlier=False).values_list(
            "event_id", flat=True
        )
    )
    return [p for p in dict.fromkeys(prev_ids) if p not in held]


def add_backward_extremities(room: Room, event_ids: Iterable[str], *, depth: int) -> None:
    """Note gaps: events cited by an event at ``depth`` that we do not hold."""
    for event_id in event_ids:
        if len(event_id) > 255:
            continue  # not an ID any server could answer for (the event's own checks allow longer)
        updated = BackwardExtremity.objects.filter(room=room, event_id=event_id, depth__lt=depth).update(
            depth=depth
        )
        if not updated:
            BackwardExtremity.objects.get_or_create(room=room, event_id=event_id, defaults={"depth": depth})


def remove_backward_extremity(room: Room, event_id: str) -> None:
    """The event is in the timeline now: no longer a gap."""
    BackwardExtremity.objects.filter(room=room, event_id=event_id).delete()


def get_backward_extremities(
    room: Room, *, max_depth: int | None, min_depth: int | None, now: int, limit: int
) -> list[Gap]:
    """The room's gaps met by a walk between ``max_depth`` and ``min_depth`` (``None``: unbounded),
    not waiting for a retry, newest first: one index range scan."""
    params: list[Any] = [room.pk, now]
    sql = "SELECT event_id, depth, attempts FROM backward_extremities WHERE room_id = %s AND retry_after_ts <= %s"
    if max_depth is not None:
        sql += " AND depth <= %s"
        params.append(max_depth)
    if min_depth is not None:
        sql += " AND depth >= %s"
        params.append(min_depth)
    sql += " ORDER BY depth DESC, event_id LIMIT %s"
    params.append(limit)
    return [Gap(str(e), int(d), int(a)) for e, d, a in fetch_rows(sql, params)]


def get_gaps(room: Room, event_ids: Sequence[str]) -> list[Gap]:
    """Those of ``event_ids`` that are still gaps of the room."""
    rows = BackwardExtremity.objects.filter(room=room, event_id__in=list(event_ids)).values_list(
        "event_id", "depth", "attempts"
    )
    return [Gap(str(e), int(d), int(a)) for e, d, a in rows]


def count_backward_extremities(room: Room) -> int:
    return BackwardExtremity.objects.filter(room=room).count()


def note_backfill_failure(room: Room, event_ids: Sequence[str], *, retry_after_ts: int) -> None:
    """Nobody had these gaps' events for us now: ask again only after ``retry_after_ts``."""
    if not event_ids:
        return
    BackwardExtremity.objects.filter(room=room, event_id__in=list(event_ids)).update(
        attempts=F("attempts") + 1, retry_after_ts=retry_after_ts
    )


def reserve_backfill_positions(count: int) -> list[int]:
    """``count`` fresh negative stream positions, most negative first.

    A backfilled event is older than anything already in the room, so it takes a position
    below every position given so far: negative, and further down the further back it is
    (the first of the list for the oldest event of a batch). Sync tokens only ever hold
    positive positions, so no incremental /sync and no long-poll ever sees these events as
    new; the initial /sync's stream order still puts them before the room's other events.
    Run in its own short transaction: unlike the events stream, commit order does not matter.
    """
    if count <= 0:
        return []
    last = advance_stream(BACKFILL_COUNTER, count)
    return [-(last - i) for i in range(count)]


def promote_outlier(
    *, nid: int, state_group_before: int | None, state_group: int | None, stream_ordering: int
) -> None:
    """An outlier (stored from a state or auth chain answer) joins the timeline where backfill
    found it: it gets its state and its (backfilled) position."""
    EventRow.objects.filter(id=nid, outlier=True).update(
        outlier=False,
        state_group_before=state_group_before,
        state_group=state_group,
        stream_ordering=stream_ordering,
    )

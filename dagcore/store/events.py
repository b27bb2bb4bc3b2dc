"""Reading and writing events, their edges and the room's forward extremities."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

from dagcore.models import Event as EventRow
from dagcore.models import EventAuthEdge, EventEdge, Room
from dagcore.protocol.events import Event
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import get_room_version
from dagcore.store.dialect import is_postgres
from dagcore.store.sql import fetch_rows, in_list
from dagcore.store.streams import advance_stream

#: Columns every ORM reader needs (``values(*EVENT_FIELDS)``, then :func:`from_values`); ``json`` is the PDU.
EVENT_FIELDS = (
    "id",
    "event_id",
    "json",
    "room__room_version",
    "room_id",
    "stream_ordering",
    "depth",
    "outlier",
    "rejected_reason",
    "soft_failed",
    "state_group_before",
    "state_group",
    "redacted_by",
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A persisted event: the PDU (as a protocol ``Event``) plus what we know about it."""

    nid: int
    event: Event
    room_nid: int
    stream_ordering: int | None
    depth: int
    outlier: bool
    rejected_reason: str | None
    soft_failed: bool
    state_group_before: int | None
    state_group: int | None
    redacted_by: str | None

    @property
    def event_id(self) -> str:
        return self.event.event_id

    @property
    def effective_event(self) -> Event:
        """The event as the room now has it: pruned once a redaction applied to it (spec:
        "Redactions" — auth rules and state resolution see the redacted form; before v11 a
        redacted ``m.room.power_levels`` loses ``invite``)."""
        return as_redacted(self.event) if self.redacted_by is not None else self.event


def as_redacted(event: Event) -> Event:
    return Event(redact_pdu(event.pdu, event.room_version), event.room_version, event.event_id)


def from_values(row: dict[str, Any]) -> StoredEvent:
    version = get_room_version(row["room__room_version"], require_supported=False)
    event = Event(json.loads(row["json"]), version, row["event_id"], rejected_reason=row["rejected_reason"])
    return StoredEvent(
        nid=row["id"],
        event=event,
        room_nid=row["room_id"],
        stream_ordering=row["stream_ordering"],
        depth=row["depth"],
        outlier=row["outlier"],
        rejected_reason=row["rejected_reason"],
        soft_failed=row["soft_failed"],
        state_group_before=row["state_group_before"],
        state_group=row["state_group"],
        redacted_by=row["redacted_by"],
    )


#: The same columns for raw SQL over ``events e JOIN rooms r`` (hot paths skip the ORM's
#: query compilation, which costs more than the query itself for small lookups).
EVENT_COLUMNS = (
    "e.id, e.event_id, e.json, r.room_version, e.room_id, e.stream_ordering, e.depth, e.outlier, "
    "e.rejected_reason, e.soft_failed, e.state_group_before, e.state_group, e.redacted_by"
)
EVENT_TABLES = "events e JOIN rooms r ON r.id = e.room_id"
#: Events clients are shown (raw SQL form of the timeline condition): in the timeline,
#: not rejected into it, not outliers, not soft-failed.
TIMELINE_SQL = "e.stream_ordering IS NOT NULL AND NOT e.soft_failed AND NOT e.outlier"


def from_row(row: Sequence[Any]) -> StoredEvent:
    """A ``StoredEvent`` from a raw row of ``EVENT_COLUMNS``."""
    nid, event_id, raw, version, room_nid, stream, depth, outlier, rejected, soft, sg_before, sg, redacted = (
        row
    )
    event = Event(
        json.loads(raw),
        get_room_version(version, require_supported=False),
        event_id,
        rejected_reason=rejected,
    )
    return StoredEvent(
        nid=nid,
        event=event,
        room_nid=room_nid,
        stream_ordering=stream,
        depth=depth,
        outlier=bool(outlier),
        rejected_reason=rejected,
        soft_failed=bool(soft),
        state_group_before=sg_before,
        state_group=sg,
        redacted_by=redacted,
    )


def _events_where(column: str, values: Sequence[Any]) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    for start in range(0, len(values), 500):
        params: list[Any] = []
        cond = in_list(f"e.{column}", values[start : start + 500], params)
        out.extend(
            from_row(r)
            for r in fetch_rows(f"SELECT {EVENT_COLUMNS} FROM {EVENT_TABLES} WHERE {cond}", params)
        )
    return out


def get_events_by_ids(event_ids: Iterable[str]) -> dict[str, StoredEvent]:
    """Events by event ID (raw SQL: this runs on every send, sync and pagination)."""
    return {ev.event_id: ev for ev in _events_where("event_id", list(set(event_ids)))}


def get_event_by_id(event_id: str) -> StoredEvent | None:
    return get_events_by_ids([event_id]).get(event_id)


def get_events_by_nids(nids: Iterable[int]) -> dict[int, StoredEvent]:
    return {ev.nid: ev for ev in _events_where("id", list(set(nids)))}


def get_nids_for_event_ids(event_ids: Iterable[str]) -> dict[str, int]:
    ids = list(set(event_ids))
    out: dict[str, int] = {}
    for start in range(0, len(ids), 500):
        out.update(
            EventRow.objects.filter(event_id__in=ids[start : start + 500]).values_list("event_id", "id")
        )
    return out


def get_event_ids_for_nids(nids: Iterable[int]) -> dict[int, str]:
    ids = list(set(nids))
    out: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        out.update(EventRow.objects.filter(id__in=ids[start : start + 500]).values_list("id", "event_id"))
    return out


@dataclass(frozen=True, slots=True)
class Extremity:
    nid: int
    event_id: str
    depth: int
    state_group: int | None


def get_forward_extremities(room: Room) -> list[Extremity]:
    """Deepest first. Read from the room row the caller already holds: no query."""
    return [
        Extremity(int(n), str(e), int(d), sg) for n, e, d, sg in json.loads(room.forward_extremities or "[]")
    ]


def encode_forward_extremities(extremities: Sequence[Extremity]) -> str:
    ordered = sorted(extremities, key=lambda e: (-e.depth, e.nid))
    return json.dumps([[e.nid, e.event_id, e.depth, e.state_group] for e in ordered], separators=(",", ":"))


def allocate_event_nid() -> int:
    """Reserve the internal ID of an event about to be written.

    The event row itself is inserted last in its transaction, together with its
    stream position (one write, never updated afterwards); rows that point at it
    (state groups, current state, memberships) are written first. Their foreign
    keys are checked at commit (Django declares them DEFERRABLE INITIALLY DEFERRED).
    """
    with connection.cursor() as cur:
        if is_postgres():
            cur.execute("SELECT nextval(pg_get_serial_sequence('events', 'id'))")
        else:
            # SQLite serialises writers (IMMEDIATE transactions), so reading the
            # AUTOINCREMENT counter here cannot race; it never reuses an ID.
            cur.execute(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'),"
                " (SELECT MAX(id) FROM events), 0) + 1"
            )
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def allocate_event_nids(count: int) -> list[int]:
    """Reserve ``count`` internal IDs at once, ascending (:func:`allocate_event_nid` for a batch)."""
    if count <= 0:
        return []
    if not is_postgres():
        first = allocate_event_nid()  # SQLite serialises writers: the next IDs are ours too
        return list(range(first, first + count))
    with connection.cursor() as cur:
        cur.execute(
            "SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, %s)", [count]
        )
        return sorted(int(r[0]) for r in cur.fetchall())


def _relation_of(event: Event) -> tuple[str | None, str | None]:
    """``(relates_to, relation_type)`` columns: ``m.relates_to`` of the content, when usable."""
    relates = event.content.get("m.relates_to")
    if (
        isinstance(relates, dict)
        and isinstance(relates.get("event_id"), str)
        and len(relates["event_id"]) <= 255
    ):
        rel = relates.get("rel_type")
        return relates["event_id"], rel[:64] if isinstance(rel, str) else None
    return None, None


@dataclass(frozen=True, slots=True)
class NewOutlier:
    """An outlier checked and ready to write: its reserved nid, auth chain (state events) and PDU text."""

    nid: int
    event: Event
    auth_chain: Sequence[int] | None
    canonical_json: str


#: Rows per INSERT of a batch: psycopg binds parameters server-side, at most 65,535 a statement
#: (an event row has 21 columns, an edge 2).
_EVENT_BATCH = 500
_EDGE_BATCH = 5000


def insert_outliers(*, room: Room, outliers: Sequence[NewOutlier], received_ts: int) -> None:
    """Write a batch of outliers (IDs from :func:`allocate_event_nids`) and their edges in a few
    statements: the rows :func:`insert_event` writes for each with ``outlier=True`` and no state
    group, no rejection, no stream position. A remote join stores a room's whole state so."""
    rows = []
    for o in outliers:
        relates_to, relation_type = _relation_of(o.event)
        rows.append(
            EventRow(
                id=o.nid, event_id=o.event.event_id, room=room, type=o.event.type,
                state_key=o.event.state_key, sender=o.event.sender, depth=o.event.depth,
                origin_server_ts=o.event.origin_server_ts, received_ts=received_ts, stream_ordering=None,
                json=o.canonical_json, outlier=True, rejected_reason=None, soft_failed=False,
                redacted_by=None, redacts=o.event.redacts, relates_to=relates_to, relation_type=relation_type,
                state_group_before=None, state_group=None,
                auth_chain=json.dumps(list(o.auth_chain)) if o.auth_chain is not None else None,
            )
        )  # fmt: skip
    EventRow.objects.bulk_create(rows, batch_size=_EVENT_BATCH)
    EventEdge.objects.bulk_create(
        [EventEdge(event_id=o.nid, prev_event_id=p) for o in outliers for p in o.event.prev_event_ids],
        batch_size=_EDGE_BATCH,
    )
    EventAuthEdge.objects.bulk_create(
        [EventAuthEdge(event_id=o.nid, auth_event_id=a) for o in outliers for a in o.event.auth_event_ids],
        batch_size=_EDGE_BATCH,
    )


def insert_event(
    *,
    nid: int,
    room: Room,
    event: Event,
    received_ts: int,
    outlier: bool,
    rejected_reason: str | None,
    soft_failed: bool,
    state_group_before: int | None,
    state_group: int | None,
    auth_chain: Sequence[int] | None,
    canonical_json: str,
    assign_stream_ordering: bool,
    backfilled_position: int | None = None,
    redacted_by: str | None = None,
) -> int | None:
    """Write the event row (ID from :func:`allocate_event_nid`) and its edges; return its stream position.

    With ``assign_stream_ordering`` the events stream counter is bumped in the same
    statement: this must be the transaction's last write, since the counter row
    stays locked until commit, which is what makes positions commit in order
    (see ``dagcore.models.streams``). Rejected events and outliers get no position.
    ``backfilled_position``: the (negative) position reserved for a backfilled event
    (``dagcore.store.backfill.reserve_backfill_positions``), written as it is.
    ``redacted_by``: a redaction of the event that arrived before it and applies to it.
    """
    relates_to, relation_type = _relation_of(event)
    fields: dict[str, Any] = dict(
        id=nid,
        event_id=event.event_id,
        type=event.type,
        state_key=event.state_key,
        sender=event.sender,
        depth=event.depth,
        origin_server_ts=event.origin_server_ts,
        received_ts=received_ts,
        json=canonical_json,
        outlier=outlier,
        rejected_reason=rejected_reason,
        soft_failed=soft_failed,
        redacts=event.redacts,
        relates_to=relates_to,
        relation_type=relation_type,
        state_group_before=state_group_before,
        state_group=state_group,
        auth_chain=json.dumps(list(auth_chain)) if auth_chain is not None else None,
        redacted_by=redacted_by,
    )
    if backfilled_position is not None:
        assert assign_stream_ordering
        row = EventRow.objects.create(room=room, stream_ordering=backfilled_position, **fields)
        EventEdge.objects.bulk_create([EventEdge(event=row, prev_event_id=p) for p in event.prev_event_ids])
        EventAuthEdge.objects.bulk_create(
            [EventAuthEdge(event=row, auth_event_id=a) for a in event.auth_event_ids]
        )
        return backfilled_position
    if is_postgres():
        # One round trip: the stream position, the row and its edges (data-modifying CTEs).
        with connection.cursor() as cur:
            cur.execute(
                _INSERT_WITH_POSITION_SQL if assign_stream_ordering else _INSERT_EVENT_SQL,
                [
                    *(fields[c] if c != "room_id" else room.pk for c in _INSERT_COLUMNS),
                    list(event.prev_event_ids),
                    list(event.auth_event_ids),
                ],
            )
            inserted = cur.fetchone()
        if inserted is not None and (inserted[0] is not None or not assign_stream_ordering):
            return None if inserted[0] is None else int(inserted[0])
        # No counter row (a test flushed the table): create it, then retry the position.
        retried = advance_stream("events")
        EventRow.objects.filter(id=nid).update(stream_ordering=retried)
        return retried
    position = advance_stream("events") if assign_stream_ordering else None
    row = EventRow.objects.create(room=room, stream_ordering=position, **fields)
    EventEdge.objects.bulk_create([EventEdge(event=row, prev_event_id=p) for p in event.prev_event_ids])
    EventAuthEdge.objects.bulk_create(
        [EventAuthEdge(event=row, auth_event_id=a) for a in event.auth_event_ids]
    )
    return position


_INSERT_COLUMNS = (
    "id", "event_id", "room_id", "type", "state_key", "sender", "depth", "origin_server_ts", "received_ts",
    "json", "outlier", "rejected_reason", "soft_failed", "redacts", "relates_to", "relation_type",
    "state_group_before", "state_group", "auth_chain", "redacted_by",
)  # fmt: skip
_EDGES_SQL = (
    "prev AS (INSERT INTO event_edges (event_id, prev_event_id) "
    "SELECT ev.id, p FROM ev, unnest(%s::text[]) AS p), "
    "auth AS (INSERT INTO event_auth_edges (event_id, auth_event_id) "
    "SELECT ev.id, a FROM ev, unnest(%s::text[]) AS a) "
)
_INSERT_EVENT_SQL = (
    "WITH ev AS (INSERT INTO events ("
    + ", ".join(_INSERT_COLUMNS)
    + ", stream_ordering) VALUES ("
    + ", ".join(["%s"] * len(_INSERT_COLUMNS))
    + ", NULL) RETURNING id, stream_ordering), "
    + _EDGES_SQL
    + "SELECT stream_ordering FROM ev"
)
_INSERT_WITH_POSITION_SQL = (
    "WITH s AS (UPDATE stream_counters SET position = position + 1 WHERE name = 'events' RETURNING position), "
    "ev AS (INSERT INTO events ("
    + ", ".join(_INSERT_COLUMNS)
    + ", stream_ordering) VALUES ("
    + ", ".join(["%s"] * len(_INSERT_COLUMNS))
    + ", (SELECT position FROM s)) RETURNING id, stream_ordering), "
    + _EDGES_SQL
    + "SELECT stream_ordering FROM ev"
)


def get_auth_chains(nids: Iterable[int]) -> dict[int, list[int]]:
    """Materialised auth chains (state events only; others map to ``[]``)."""
    ids = list(set(nids))
    out: dict[int, list[int]] = {}
    for start in range(0, len(ids), 1000):
        for nid, chain in EventRow.objects.filter(id__in=ids[start : start + 1000]).values_list(
            "id", "auth_chain"
        ):
            out[nid] = json.loads(chain) if chain else []
    return out


def get_prev_event_ids(nid: int) -> list[str]:
    return list(EventEdge.objects.filter(event_id=nid).values_list("prev_event_id", flat=True))


def get_child_event_ids(event_id: str) -> list[str]:
    return list(EventEdge.objects.filter(prev_event_id=event_id).values_list("event__event_id", flat=True))


def count_room_events(room: Room) -> int:
    return EventRow.objects.filter(room=room).count()


def is_forward_extremity(room_nid: int, nid: int) -> bool:
    raw = Room.objects.filter(pk=room_nid).values_list("forward_extremities", flat=True).first()
    return any(int(e[0]) == nid for e in json.loads(raw or "[]"))

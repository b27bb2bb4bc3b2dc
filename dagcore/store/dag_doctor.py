"""Reads and writes of the DAG doctor (``manage.py dag check / repair / forks``) and the
Politburo DAG inspector (issues 13 and 14).

Every read is safe on a live server: plain SELECTs outside any transaction (no row lock,
nothing a writer waits on), the room's events paged by internal ID so no statement runs
long. The writers run inside the repair's transaction, under the room's write lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from dagcore.models import (
    BackwardExtremity,
    CurrentStateEvent,
    DagRepair,
    Room,
    RoomMembership,
    RoomServer,
    StateGroup,
    StateGroupEntry,
)
from dagcore.models import Event as EventRow
from dagcore.protocol.events import StateKey
from dagcore.store.dialect import is_postgres
from dagcore.store.sql import fetch_rows, in_list

#: Events read per statement when a whole room is walked.
PAGE = 1000


@dataclass(frozen=True, slots=True)
class DagNode:
    """What the doctor and the inspector need of one event: no PDU, its flags and edges."""

    nid: int
    event_id: str
    type: str
    state_key: str | None
    sender: str
    depth: int
    outlier: bool
    rejected_reason: str | None
    soft_failed: bool
    stream_ordering: int | None
    state_group_before: int | None
    state_group: int | None
    redacted_by: str | None
    prev_ids: tuple[str, ...]
    auth_ids: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.rejected_reason is None

    @property
    def is_state(self) -> bool:
        return self.state_key is not None

    @property
    def in_head(self) -> bool:
        """Whether the event may be a forward extremity: accepted, in the timeline, not
        soft-failed, and not history fetched by backfill (negative positions never move the head)."""
        return (
            self.accepted
            and not self.outlier
            and not self.soft_failed
            and self.stream_ordering is not None
            and self.stream_ordering > 0
        )


_NODE_COLUMNS = (
    "id, event_id, type, state_key, sender, depth, outlier, rejected_reason, soft_failed, "
    "stream_ordering, state_group_before, state_group, redacted_by"
)


def _edges(table: str, column: str, nids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    if not nids:
        return out
    params: list[Any] = []
    cond = in_list("event_id", nids, params)
    for nid, target in fetch_rows(f"SELECT event_id, {column} FROM {table} WHERE {cond} ORDER BY id", params):
        out.setdefault(int(nid), []).append(str(target))
    return out


def _nodes(rows: Sequence[Sequence[Any]], *, with_auth: bool) -> list[DagNode]:
    nids = [int(r[0]) for r in rows]
    prevs = _edges("event_edges", "prev_event_id", nids)
    auths = _edges("event_auth_edges", "auth_event_id", nids) if with_auth else {}
    return [
        DagNode(
            nid=int(r[0]),
            event_id=str(r[1]),
            type=str(r[2]),
            state_key=r[3],
            sender=str(r[4]),
            depth=int(r[5]),
            outlier=bool(r[6]),
            rejected_reason=r[7],
            soft_failed=bool(r[8]),
            stream_ordering=r[9],
            state_group_before=r[10],
            state_group=r[11],
            redacted_by=r[12],
            prev_ids=tuple(prevs.get(int(r[0]), ())),
            auth_ids=tuple(auths.get(int(r[0]), ())),
        )
        for r in rows
    ]


def load_room_nodes(room: Room, *, with_auth: bool = False) -> list[DagNode]:
    """Every event of the room (outliers too) with its prev edges, read a page at a time."""
    out: list[DagNode] = []
    after = 0
    while True:
        rows = fetch_rows(
            f"SELECT {_NODE_COLUMNS} FROM events WHERE room_id = %s AND id > %s ORDER BY id LIMIT %s",
            [room.pk, after, PAGE],
        )
        if not rows:
            return out
        out.extend(_nodes(rows, with_auth=with_auth))
        after = int(rows[-1][0])


def get_nodes_by_ids(event_ids: Iterable[str], *, with_auth: bool = True) -> dict[str, DagNode]:
    ids = list(dict.fromkeys(event_ids))
    out: dict[str, DagNode] = {}
    for start in range(0, len(ids), 500):
        params: list[Any] = []
        cond = in_list("event_id", ids[start : start + 500], params)
        rows = fetch_rows(f"SELECT {_NODE_COLUMNS} FROM events WHERE {cond}", params)
        out.update({n.event_id: n for n in _nodes(rows, with_auth=with_auth)})
    return out


def get_recent_nodes(room: Room, *, limit: int, before_nid: int | None = None) -> list[DagNode]:
    """The room's newest ``limit`` events by arrival (internal ID), outliers included, older
    than ``before_nid`` if given; with prev and auth edges. Newest first."""
    params: list[Any] = [room.pk]
    sql = f"SELECT {_NODE_COLUMNS} FROM events WHERE room_id = %s"
    if before_nid is not None:
        sql += " AND id < %s"
        params.append(before_nid)
    sql += " ORDER BY id DESC LIMIT %s"
    params.append(limit)
    return _nodes(fetch_rows(sql, params), with_auth=True)


def get_child_nodes(event_id: str, *, limit: int = 50) -> list[DagNode]:
    """Events citing ``event_id`` as a prev event."""
    rows = fetch_rows(
        f"SELECT {', '.join('e.' + c.strip() for c in _NODE_COLUMNS.split(','))} FROM event_edges ee "
        "JOIN events e ON e.id = ee.event_id WHERE ee.prev_event_id = %s ORDER BY e.id LIMIT %s",
        [event_id, limit],
    )
    return _nodes(rows, with_auth=False)


@contextmanager
def consistent_reads() -> Iterator[None]:
    """Make the reads inside see one moment of the database, without holding anyone up.

    PostgreSQL: one ``REPEATABLE READ, READ ONLY`` transaction — a snapshot (MVCC): no row
    is locked, writers never wait for it. Inside a transaction already (a repair holds the
    room's write lock, so nothing moves), and on SQLite (whose transactions here take the
    write lock), the reads run as they are; ``dag check`` re-reads a room whose head moved.
    """
    if not is_postgres() or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


# --------------------------------------------------------------------------- rooms


def list_room_ids(*, after_nid: int = 0, limit: int = 500) -> list[tuple[int, str]]:
    """``(room nid, room ID)`` of the rooms we hold, by nid: ``dag check --all`` pages with it."""
    return [
        (int(n), str(r))
        for n, r in fetch_rows(
            "SELECT id, room_id FROM rooms WHERE id > %s ORDER BY id LIMIT %s", [after_nid, limit]
        )
    ]


# --------------------------------------------------------------------------- check queries


def find_missing_auth_events(room: Room, *, limit: int) -> list[tuple[str, str]]:
    """``(event ID, auth event ID)``: auth events that events of the room cite and we do not hold."""
    rows = fetch_rows(
        "SELECT e.event_id, ae.auth_event_id FROM event_auth_edges ae JOIN events e ON e.id = ae.event_id "
        "WHERE e.room_id = %s AND NOT EXISTS (SELECT 1 FROM events a WHERE a.event_id = ae.auth_event_id) "
        "ORDER BY e.id LIMIT %s",
        [room.pk, limit],
    )
    return [(str(a), str(b)) for a, b in rows]


def get_backward_extremity_ids(room: Room) -> set[str]:
    return set(BackwardExtremity.objects.filter(room=room).values_list("event_id", flat=True))


def find_rejected_auth_events(room: Room, *, limit: int) -> list[tuple[str, str, str]]:
    """``(event ID, auth event ID, its rejection)``: accepted events citing a rejected auth event."""
    rows = fetch_rows(
        "SELECT e.event_id, a.event_id, a.rejected_reason FROM event_auth_edges ae "
        "JOIN events e ON e.id = ae.event_id JOIN events a ON a.event_id = ae.auth_event_id "
        "WHERE e.room_id = %s AND e.rejected_reason IS NULL AND a.rejected_reason IS NOT NULL "
        "ORDER BY e.id LIMIT %s",
        [room.pk, limit],
    )
    return [(str(a), str(b), str(c)) for a, b, c in rows]


@dataclass(frozen=True, slots=True)
class BadStateEntry:
    """A state group entry (or current-state row) naming an event of another room (``foreign``),
    an event we do not hold (``dangling``), or one whose type/state key is not the entry's."""

    where: str  # "state group <id>" or "current state"
    type: str
    state_key: str
    event_nid: int
    event_id: str | None
    event_room_id: str | None
    kind: str  # foreign / dangling / mislabelled


def find_bad_state_entries(room: Room, *, groups: Iterable[int], limit: int) -> list[BadStateEntry]:
    """Entries of the given state groups (those in use: the groups events and the room name,
    with their chains) and of current state naming another room's events (Synapse #7012),
    unknown events, or events of another ``(type, state_key)``."""
    out: list[BadStateEntry] = []
    wanted = sorted(set(groups))
    bad_entry = "(e.id IS NULL OR e.room_id <> %s OR e.type <> x.type OR e.state_key IS NULL OR e.state_key <> x.state_key)"
    for start in range(0, len(wanted), 500):
        params: list[Any] = []
        cond = in_list("x.group_id", wanted[start : start + 500], params)
        rows = fetch_rows(
            "SELECT x.group_id, x.type, x.state_key, x.event_nid, e.event_id, e.room_id, r.room_id "
            "FROM state_group_entries x LEFT JOIN events e ON e.id = x.event_nid "
            f"LEFT JOIN rooms r ON r.id = e.room_id WHERE {cond} AND x.event_nid <> 0 AND {bad_entry} LIMIT %s",
            [*params, room.pk, limit],
        )
        out.extend(
            _bad(room, f"state group {gid}", t, s, n, eid, eroom, rid)
            for gid, t, s, n, eid, eroom, rid in rows
        )
    rows = fetch_rows(
        "SELECT x.type, x.state_key, x.event_id, e.event_id, e.room_id, r.room_id FROM current_state_events x "
        f"LEFT JOIN events e ON e.id = x.event_id LEFT JOIN rooms r ON r.id = e.room_id "
        f"WHERE x.room_id = %s AND {bad_entry} LIMIT %s",
        [room.pk, room.pk, limit],
    )
    out.extend(_bad(room, "current state", t, s, n, eid, eroom, rid) for t, s, n, eid, eroom, rid in rows)
    # Events of the room pointing at another room's state groups.
    for eid, gid, other in fetch_rows(
        "SELECT e.event_id, sg.id, r.room_id FROM events e JOIN state_groups sg "
        "ON (sg.id = e.state_group OR sg.id = e.state_group_before) JOIN rooms r ON r.id = sg.room_id "
        "WHERE e.room_id = %s AND sg.room_id <> e.room_id LIMIT %s",
        [room.pk, limit],
    ):
        out.append(BadStateEntry(f"state group {gid}", "*", "*", 0, str(eid), str(other), "foreign_group"))
    return out[:limit]


def _bad(
    room: Room,
    where: str,
    etype: str,
    skey: str,
    nid: int,
    eid: str | None,
    eroom: int | None,
    rid: str | None,
) -> BadStateEntry:
    kind = "dangling" if eid is None else "foreign" if int(eroom or 0) != room.pk else "mislabelled"
    return BadStateEntry(where, str(etype), str(skey), int(nid), eid, rid, kind)


def find_unknown_state_groups(room: Room, *, limit: int) -> list[tuple[str, int]]:
    """``(event ID, group)``: events of the room citing a state group that does not exist."""
    rows = fetch_rows(
        "SELECT e.event_id, g FROM (SELECT event_id, state_group AS g FROM events WHERE room_id = %s "
        "AND state_group IS NOT NULL UNION ALL SELECT event_id, state_group_before FROM events "
        "WHERE room_id = %s AND state_group_before IS NOT NULL) e "
        "WHERE NOT EXISTS (SELECT 1 FROM state_groups sg WHERE sg.id = e.g) LIMIT %s",
        [room.pk, room.pk, limit],
    )
    return [(str(a), int(b)) for a, b in rows]


@dataclass(frozen=True, slots=True)
class GroupShape:
    """A state group's own rows: its predecessor and, for a delta, the entries it adds."""

    prev_group: int | None
    is_snapshot: bool
    delta: dict[StateKey, int]


def get_group_shapes(groups: Iterable[int]) -> dict[int, GroupShape]:
    """Shapes of many groups (deltas' entries too; a snapshot's entries are not read)."""
    ids = list(set(groups))
    out: dict[int, GroupShape] = {}
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        meta = list(StateGroup.objects.filter(id__in=part).values_list("id", "prev_group", "is_snapshot"))
        deltas = [gid for gid, _, snap in meta if not snap]
        entries: dict[int, dict[StateKey, int]] = {}
        for gid, t, s, n in StateGroupEntry.objects.filter(group_id__in=deltas).values_list(
            "group_id", "type", "state_key", "event_nid"
        ):
            entries.setdefault(gid, {})[(t, s)] = n
        for gid, prev, snap in meta:
            out[gid] = GroupShape(prev, snap, entries.get(gid, {}))
    return out


def get_event_nids_in_room(room: Room, nids: Iterable[int]) -> set[int]:
    wanted = list(set(nids))
    out: set[int] = set()
    for start in range(0, len(wanted), 1000):
        out.update(
            EventRow.objects.filter(room=room, id__in=wanted[start : start + 1000]).values_list(
                "id", flat=True
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class MemberRow:
    user_id: str
    membership: str
    event_nid: int
    stream_ordering: int
    is_local: bool
    displayname: str | None
    avatar_url: str | None


def get_membership_rows(room: Room) -> dict[str, MemberRow]:
    return {
        u: MemberRow(u, m, n, s, loc, d, a)
        for u, m, n, s, loc, d, a in RoomMembership.objects.filter(room=room).values_list(
            "user_id", "membership", "event_id", "stream_ordering", "is_local", "displayname", "avatar_url"
        )
    }


def get_room_server_counts(room: Room) -> dict[str, int]:
    return dict(RoomServer.objects.filter(room=room).values_list("server_name", "joined_count"))


@dataclass(frozen=True, slots=True)
class MemberEventInfo:
    nid: int
    membership: str
    stream_ordering: int | None
    displayname: str | None
    avatar_url: str | None


def get_member_event_infos(nids: Iterable[int]) -> dict[int, MemberEventInfo]:
    """What a ``room_memberships`` row holds of each member event (the content's fields)."""
    wanted = list(set(nids))
    out: dict[int, MemberEventInfo] = {}
    for start in range(0, len(wanted), 500):
        for nid, raw, stream in EventRow.objects.filter(id__in=wanted[start : start + 500]).values_list(
            "id", "json", "stream_ordering"
        ):
            content = json.loads(raw).get("content")
            content = content if isinstance(content, dict) else {}
            membership = content.get("membership")
            name = content.get("displayname")
            avatar = content.get("avatar_url")
            out[nid] = MemberEventInfo(
                nid,
                membership if isinstance(membership, str) else "leave",
                stream,
                name[:512] if isinstance(name, str) else None,
                avatar[:512] if isinstance(avatar, str) else None,
            )
    return out


def get_room_head(room_id: str) -> tuple[str, int, int | None] | None:
    """``(forward_extremities JSON, forward_extremity_count, current_state_group)`` as stored now."""
    row = (
        Room.objects.filter(room_id=room_id)
        .values_list("forward_extremities", "forward_extremity_count", "current_state_group")
        .first()
    )
    return None if row is None else (str(row[0]), int(row[1]), row[2])


# --------------------------------------------------------------------------- repair writers


def set_event_state_groups(*, nid: int, state_group_before: int | None, state_group: int | None) -> None:
    EventRow.objects.filter(id=nid).update(state_group_before=state_group_before, state_group=state_group)


def set_event_rejection(*, nid: int, rejected_reason: str | None, stream_ordering: int | None) -> None:
    """Reject an event (or undo that): a rejected event has no stream position (never shown)."""
    EventRow.objects.filter(id=nid).update(rejected_reason=rejected_reason, stream_ordering=stream_ordering)


def replace_current_state(room: Room, state: Mapping[StateKey, int]) -> None:
    """Make the room's current-state rows exactly ``state`` (only changed rows are written)."""
    existing = {
        (t, s): (pk, n)
        for pk, t, s, n in CurrentStateEvent.objects.filter(room=room).values_list(
            "id", "type", "state_key", "event_id"
        )
    }
    stale = [pk for key, (pk, n) in existing.items() if state.get(key) != n]
    if stale:
        CurrentStateEvent.objects.filter(id__in=stale).delete()
    CurrentStateEvent.objects.bulk_create(
        [
            CurrentStateEvent(room=room, type=t, state_key=s, event_id=n)
            for (t, s), n in state.items()
            if existing.get((t, s), (0, None))[1] != n
        ]
    )


def replace_memberships(room: Room, rows: Mapping[str, MemberRow]) -> None:
    """Make the room's membership rows exactly ``rows`` (only changed rows are written)."""
    existing = get_membership_rows(room)
    gone = [u for u in existing if u not in rows]
    if gone:
        RoomMembership.objects.filter(room=room, user_id__in=gone).delete()
    for user_id, row in rows.items():
        if existing.get(user_id) == row:
            continue
        fields = {
            "membership": row.membership, "event_id": row.event_nid, "stream_ordering": row.stream_ordering,
            "is_local": row.is_local, "displayname": row.displayname, "avatar_url": row.avatar_url,
        }  # fmt: skip
        if user_id in existing:
            RoomMembership.objects.filter(room=room, user_id=user_id).update(**fields)
        else:
            RoomMembership.objects.create(room=room, user_id=user_id, **fields)


def replace_room_server_counts(room: Room, counts: Mapping[str, int]) -> None:
    existing = get_room_server_counts(room)
    for server, count in counts.items():
        if existing.get(server) != count:
            RoomServer.objects.update_or_create(
                room=room, server_name=server, defaults={"joined_count": count}
            )
    for server in existing:
        if server not in counts:
            RoomServer.objects.filter(room=room, server_name=server).update(joined_count=0)


def add_backward_extremities(room: Room, gaps: Mapping[str, int]) -> None:
    """Record gaps ``event ID -> depth of the newest event citing it``."""
    for event_id, depth in gaps.items():
        BackwardExtremity.objects.get_or_create(room=room, event_id=event_id[:255], defaults={"depth": depth})


def remove_backward_extremities(room: Room, event_ids: Iterable[str]) -> None:
    BackwardExtremity.objects.filter(room=room, event_id__in=list(event_ids)).delete()


# --------------------------------------------------------------------------- undo records


def insert_repair_record(
    *, room_id: str, actor: str, created_ts: int, plan: Mapping[str, Any], undo: Mapping[str, Any]
) -> DagRepair:
    return DagRepair.objects.create(
        room_id=room_id, actor=actor[:255], created_ts=created_ts, plan=dict(plan), undo=dict(undo)
    )


def get_repair_record(repair_id: int) -> DagRepair | None:
    return DagRepair.objects.filter(id=repair_id).first()


def list_repair_records(*, room_id: str | None = None, limit: int = 50) -> list[DagRepair]:
    qs = DagRepair.objects.all()
    if room_id is not None:
        qs = qs.filter(room_id=room_id)
    return list(qs.order_by("-id")[:limit])


def mark_repair_undone(record: DagRepair, *, ts: int) -> None:
    record.undone_ts = ts
    record.save(update_fields=["undone_ts"])

"""What ``manage.py doctor`` reads from the database (issue 14), and ``manage.py vacuum``.

Read-only selectors, except :func:`vacuum`. PostgreSQL and SQLite both answer each one;
what only PostgreSQL can say (bloat) returns ``None`` on SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, Max, Min

from dagcore.models import (
    Event,
    FederationDestination,
    FederationOutboxEdu,
    FederationOutboxEntry,
    Room,
    RoomServer,
)


def ping() -> None:
    """One round trip (raises the driver's error when the database is unreachable)."""
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def database_size_bytes() -> int:
    if is_postgres():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_database_size(current_database())")
            return int(cur.fetchone()[0])
    path = sqlite_path()
    return path.stat().st_size if path is not None and path.exists() else 0


def sqlite_path() -> Path | None:
    name = connection.settings_dict.get("NAME")
    if connection.vendor != "sqlite" or not name or str(name).startswith(":memory:"):
        return None
    return Path(str(name))


def postgres_data_directory() -> Path | None:
    """The server's data directory when we may read it (superuser or ``pg_read_all_settings``)
    and the database runs on this machine; else ``None``."""
    host = str(connection.settings_dict.get("HOST") or "")
    if not is_postgres() or (host not in ("", "localhost", "127.0.0.1", "::1") and not host.startswith("/")):
        return None
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT current_setting('data_directory', true)")
            value = cur.fetchone()[0]
    except Exception:  # permission denied: the check just cannot say
        return None
    return Path(value) if value else None


def unapplied_migrations() -> list[str]:
    """``app.name`` of every migration on disk not applied to the database."""
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


@dataclass(frozen=True)
class RoomExtremities:
    room_id: str
    count: int


def rooms_over_extremities(*, threshold: int, limit: int = 20) -> tuple[int, list[RoomExtremities]]:
    """How many rooms have more than ``threshold`` forward extremities, and the worst ``limit``."""
    qs = Room.objects.filter(forward_extremity_count__gt=threshold)
    worst = qs.order_by("-forward_extremity_count", "room_id").values_list(
        "room_id", "forward_extremity_count"
    )
    return qs.count(), [RoomExtremities(r, c) for r, c in worst[:limit]]


def room_versions_in_use() -> dict[str, int]:
    """Room version -> number of rooms."""
    rows = Room.objects.values("room_version").annotate(n=Count("id")).order_by("room_version")
    return {str(row["room_version"]): int(row["n"]) for row in rows}


@dataclass(frozen=True)
class OutboxDepth:
    pdus: int
    edus: int
    #: ``created_ts`` of the oldest undelivered row (``None``: nothing waits).
    oldest_ts: int | None
    destinations: int


def outbox_depth() -> OutboxDepth:
    pdus = FederationOutboxEntry.objects.filter(dead_letter__isnull=True)
    edus = FederationOutboxEdu.objects.filter(dead_letter__isnull=True)
    oldest = [
        v for v in (pdus.aggregate(m=Min("created_ts"))["m"], edus.aggregate(m=Min("created_ts"))["m"]) if v
    ]
    dests = set(pdus.values_list("destination", flat=True).distinct()) | set(
        edus.values_list("destination", flat=True).distinct()
    )
    return OutboxDepth(pdus.count(), edus.count(), min(oldest) if oldest else None, len(dests))


# --------------------------------------------------------------------------- destinations


@dataclass(frozen=True)
class DestinationRow:
    """One federation destination as operators see it (the admin API and the console)."""

    server_name: str
    last_success_ts: int | None
    last_failure_ts: int | None
    failing_since_ts: int | None
    next_attempt_ts: int
    failures: int
    last_error: str
    dead_lettered: int
    queued_pdus: int
    queued_edus: int
    oldest_queued_ts: int | None


_DEST_FIELDS = (
    "server_name",
    "last_success_ts",
    "last_failure_ts",
    "failing_since_ts",
    "next_attempt_ts",
    "failures",
    "last_error",
    "dead_lettered",
)

#: Synapse's ``order_by`` values -> our columns (Synapse's ``retry_interval`` is the current
#: back-off: here the time between the last failure and the next attempt, ordered by its end).
DESTINATION_ORDER = {
    "destination": "server_name",
    "retry_last_ts": "last_failure_ts",
    "retry_interval": "next_attempt_ts",
    "failure_ts": "failing_since_ts",
    "last_successful_stream_ordering": "last_success_ts",
}


def _queue_figures(names: list[str]) -> dict[str, tuple[int, int, int | None]]:
    """Destination -> (queued PDUs, queued EDUs, oldest queued ``created_ts``)."""
    figures: dict[str, list[int | None]] = {n: [0, 0, None] for n in names}
    for model, slot in ((FederationOutboxEntry, 0), (FederationOutboxEdu, 1)):
        rows = (
            model.objects.filter(destination__in=names, dead_letter__isnull=True)
            .values("destination")
            .annotate(n=Count("id"), oldest=Min("created_ts"))
        )
        for row in rows:
            entry = figures[row["destination"]]
            entry[slot] = int(row["n"])
            old = entry[2]
            entry[2] = row["oldest"] if old is None else min(int(old), int(row["oldest"]))
    return {n: (int(v[0] or 0), int(v[1] or 0), v[2]) for n, v in figures.items()}


def _rows(values: list[dict[str, object]]) -> list[DestinationRow]:
    figures = _queue_figures([str(v["server_name"]) for v in values])
    out = []
    for v in values:
        pdus, edus, oldest = figures[str(v["server_name"])]
        out.append(DestinationRow(**v, queued_pdus=pdus, queued_edus=edus, oldest_queued_ts=oldest))  # type: ignore[arg-type]
    return out


def list_destinations(
    *, name_contains: str | None, order_by: str, backwards: bool, offset: int, limit: int
) -> tuple[list[DestinationRow], int]:
    """A page of destinations and the total (``order_by`` a :data:`DESTINATION_ORDER` key)."""
    qs = FederationDestination.objects.all()
    if name_contains:
        qs = qs.filter(server_name__icontains=name_contains)
    column = DESTINATION_ORDER[order_by]
    ordering = [f"-{column}" if backwards else column]
    if column != "server_name":
        ordering.append("server_name")
    total = qs.count()
    values = list(qs.order_by(*ordering).values(*_DEST_FIELDS)[offset : offset + limit])
    return _rows(values), total


def get_destination_row(server_name: str) -> DestinationRow | None:
    values = list(FederationDestination.objects.filter(server_name=server_name).values(*_DEST_FIELDS))
    return _rows(values)[0] if values else None


def failing_destinations(*, limit: int = 50) -> tuple[int, list[DestinationRow]]:
    """Destinations backing off after failures (how many, and the longest failing first)."""
    qs = FederationDestination.objects.filter(failures__gt=0)
    values = list(qs.order_by("failing_since_ts", "server_name").values(*_DEST_FIELDS)[:limit])
    return qs.count(), _rows(values)


@dataclass(frozen=True)
class DestinationRoom:
    room_id: str
    #: The newest event of the room in the events stream (Synapse: the last event sent there).
    stream_ordering: int


def list_destination_rooms(
    server_name: str, *, backwards: bool, offset: int, limit: int
) -> tuple[list[DestinationRoom], int]:
    """Rooms in which ``server_name`` has joined members (the rooms it receives events of)."""
    qs = RoomServer.objects.filter(server_name=server_name, joined_count__gt=0)
    total = qs.count()
    rows = list(
        qs.order_by("-room__room_id" if backwards else "room__room_id").values_list(
            "room_id", "room__room_id"
        )[offset : offset + limit]
    )
    latest: dict[int, int] = {}
    if rows:
        for room_nid, top in (
            Event.objects.filter(room_id__in=[r[0] for r in rows], stream_ordering__isnull=False)
            .values("room_id")
            .annotate(top=Max("stream_ordering"))
            .values_list("room_id", "top")
        ):
            latest[int(room_nid)] = int(top)
    return [DestinationRoom(room_id, latest.get(nid, 0)) for nid, room_id in rows], total


def destination_exists(server_name: str) -> bool:
    return FederationDestination.objects.filter(server_name=server_name).exists()


# --------------------------------------------------------------------------- bloat and vacuum


@dataclass(frozen=True)
class TableBloat:
    table: str
    live: int
    dead: int

    @property
    def dead_ratio(self) -> float:
        total = self.live + self.dead
        return self.dead / total if total else 0.0


def table_bloat(*, min_rows: int = 1000) -> list[TableBloat] | None:
    """PostgreSQL's live and dead tuple counts of tables with at least ``min_rows`` tuples,
    most dead first (``pg_stat_user_tables``); ``None`` on SQLite."""
    if not is_postgres():
        return None
    with connection.cursor() as cur:
        cur.execute(
            "SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables "
            "WHERE n_live_tup + n_dead_tup >= %s ORDER BY n_dead_tup DESC",
            [min_rows],
        )
        return [TableBloat(str(r[0]), int(r[1]), int(r[2])) for r in cur.fetchall()]


def vacuum(*, tables: list[str] | None = None) -> list[str]:
    """``VACUUM ANALYZE`` (PostgreSQL, each table or the whole database) or ``VACUUM`` (SQLite);
    returns what was vacuumed. Must run outside a transaction."""
    if is_postgres():
        targets = tables or []
        with connection.cursor() as cur:
            if not targets:
                cur.execute("VACUUM ANALYZE")
                return ["(all tables)"]
            known = set(connection.introspection.table_names(cur))
            for table in targets:
                if table not in known:
                    raise ValueError(f"no table named {table!r}")
            for table in targets:
                cur.execute(f"VACUUM ANALYZE {connection.ops.quote_name(table)}")
        return targets
    with connection.cursor() as cur:
        cur.execute("VACUUM")
    return ["(database file)"]

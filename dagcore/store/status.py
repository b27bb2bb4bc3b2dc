"""Figures of the server's state for the dashboard (each a cheap, indexed or catalogue query)."""

from __future__ import annotations

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, Q

from dagcore.models import FederationOutboxEdu, FederationOutboxEntry, Pusher, Room


def database_ok() -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        return bool(cur.fetchone() == (1,))


def database_vendor_version() -> str:
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SHOW server_version")
            return f"PostgreSQL {cur.fetchone()[0]}"
        cur.execute("SELECT sqlite_version()")
        return f"SQLite {cur.fetchone()[0]}"


def database_size_bytes() -> int | None:
    """PostgreSQL: the database's size on disk; SQLite: None (the caller measures the file)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cur:
        cur.execute("SELECT pg_database_size(current_database())")
        return int(cur.fetchone()[0])


def pending_migrations() -> list[str]:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{m.app_label}.{m.name}" for m, _ in plan]


def federation_outbox_counts() -> dict[str, int]:
    pdus = FederationOutboxEntry.objects.aggregate(
        pending=Count("id", filter=Q(dead_letter__isnull=True)),
        dead=Count("id", filter=Q(dead_letter__isnull=False)),
    )
    edus = FederationOutboxEdu.objects.count()
    destinations = (
        FederationOutboxEntry.objects.filter(dead_letter__isnull=True)
        .values("destination")
        .distinct()
        .count()
    )
    return {
        "pdus_pending": int(pdus["pending"] or 0),
        "pdus_dead_letter": int(pdus["dead"] or 0),
        "edus_pending": edus,
        "destinations_pending": destinations,
    }


def push_counts() -> dict[str, int]:
    row = Pusher.objects.aggregate(
        total=Count("id"), failing=Count("id", filter=Q(failing_since__isnull=False))
    )
    return {"pushers": int(row["total"] or 0), "failing": int(row["failing"] or 0)}


def rooms_with_most_extremities(limit: int = 10) -> list[tuple[str, int]]:
    rows = Room.objects.filter(forward_extremity_count__gt=1).order_by("-forward_extremity_count")
    return [(r, int(n)) for r, n in rows.values_list("room_id", "forward_extremity_count")[:limit]]

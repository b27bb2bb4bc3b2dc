"""The figures behind the costly metrics gauges (read at most every few seconds, never per request).

Each function is one or two aggregate statements over indexed tables; the caller
(``dagcore.observability.gauges``) caches what they return.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.db import connection
from django.db.models import Count, Max, Sum

from dagcore.models import (
    FederationDestination,
    FederationOutboxEdu,
    FederationOutboxEntry,
    InboundPdu,
    LocalMedia,
    MediaThumbnail,
    RemoteMedia,
    RemoteMediaThumbnail,
    Room,
)
from dagcore.store import schema


@dataclass(frozen=True)
class FederationQueues:
    #: Received PDUs staged and not yet persisted (inbound processing lag).
    staged_inbound_pdus: int
    #: Outbox rows (PDUs and durable EDUs) waiting for any destination.
    outbound_queue: int
    #: The most rows waiting for one destination (outbound lag).
    largest_destination_backlog: int
    #: Destinations whose last attempts failed (in back-off).
    failing_destinations: int


def get_federation_queues() -> FederationQueues:
    per_destination: dict[str, int] = {}
    for model in (FederationOutboxEntry, FederationOutboxEdu):
        rows = (
            model.objects.filter(dead_letter__isnull=True)
            .values("destination")
            .annotate(n=Count("id"))
            .values_list("destination", "n")
        )
        for destination, n in rows:
            per_destination[destination] = per_destination.get(destination, 0) + n
    return FederationQueues(
        staged_inbound_pdus=InboundPdu.objects.count(),
        outbound_queue=sum(per_destination.values()),
        largest_destination_backlog=max(per_destination.values(), default=0),
        failing_destinations=FederationDestination.objects.filter(failures__gt=0).count(),
    )


def get_forward_extremity_counts() -> dict[int, int]:
    """Rooms by their number of forward extremities: ``{extremities: rooms}``."""
    rows = (
        Room.objects.filter(forward_extremity_count__gt=0)
        .values("forward_extremity_count")
        .annotate(rooms=Count("id"))
        .values_list("forward_extremity_count", "rooms")
    )
    return dict(rows)


def get_media_bytes() -> dict[str, int]:
    """Bytes of media the tables account for: ``local`` uploads, ``remote`` cached copies,
    ``thumbnails`` of both."""
    local = LocalMedia.objects.aggregate(b=Sum("size"))["b"] or 0
    remote = RemoteMedia.objects.aggregate(b=Sum("size"))["b"] or 0
    thumbs = (MediaThumbnail.objects.aggregate(b=Sum("size"))["b"] or 0) + (
        RemoteMediaThumbnail.objects.aggregate(b=Sum("size"))["b"] or 0
    )
    return {"local": int(local), "remote": int(remote), "thumbnails": int(thumbs)}


def get_database_bytes() -> int:
    """The database's size: PostgreSQL's own count, or the SQLite file with its WAL."""
    if schema.is_embedded_database():
        name = Path(str(connection.settings_dict["NAME"]))
        return sum(p.stat().st_size for p in (name, Path(f"{name}-wal")) if p.exists())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return int(cursor.fetchone()[0])


def get_database_directory() -> Path | None:
    """Where the database's files are on this host, if they are here and we may know it:
    the SQLite file's folder, or PostgreSQL's ``data_directory`` (readable by superusers and
    ``pg_read_all_settings`` only; None otherwise, or when it is on another host)."""
    if schema.is_embedded_database():
        return Path(str(connection.settings_dict["NAME"])).resolve().parent
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('data_directory', true)")
        row = cursor.fetchone()
    if not row or not row[0]:
        return None
    try:
        return Path(row[0]) if Path(row[0]).is_dir() else None
    except OSError:  # not ours to look into
        return None


def get_max_room_extremities() -> int:
    return int(Room.objects.aggregate(m=Max("forward_extremity_count"))["m"] or 0)


__all__ = [
    "FederationQueues",
    "get_database_bytes",
    "get_database_directory",
    "get_federation_queues",
    "get_forward_extremity_counts",
    "get_max_room_extremities",
    "get_media_bytes",
]

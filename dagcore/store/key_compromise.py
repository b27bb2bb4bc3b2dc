"""Queries of the "signing key compromised" flow: every session revoked, local events listed."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Max, Min

from dagcore.models import AccessToken, ConsoleSession, Event, RefreshToken, RoomServer


@dataclass(frozen=True)
class SentSince:
    """Local events of one sender in one room since a time (to compare with what others hold)."""

    sender: str
    room_id: str
    count: int
    first_ts: int
    last_ts: int


def count_sessions() -> tuple[int, int, int]:
    """``(access tokens, refresh tokens, console sessions)`` of every local user and admin."""
    return AccessToken.objects.count(), RefreshToken.objects.count(), ConsoleSession.objects.count()


def delete_all_sessions() -> tuple[int, int, int]:
    """Log out every device of every user and every console session, in one transaction:
    ``(access tokens, refresh tokens, console sessions)`` deleted.

    Devices (and their end-to-end keys) stay: their owners log in again to get a token.
    """
    with transaction.atomic():
        access, _ = AccessToken.objects.all().delete()
        refresh, _ = RefreshToken.objects.all().delete()
        console, _ = ConsoleSession.objects.all().delete()
    return access, refresh, console


def local_events_since(*, since_ts: int, server_name: str, limit: int = 1000) -> list[SentSince]:
    """Events our users sent dated ``since_ts`` or later, by sender and room (most first)."""
    rows = (
        Event.objects.filter(origin_server_ts__gte=since_ts, sender__endswith=":" + server_name)
        .values("sender", "room__room_id")
        .annotate(n=Count("id"), first=Min("origin_server_ts"), last=Max("origin_server_ts"))
        .order_by("-n", "sender", "room__room_id")[:limit]
    )
    return [
        SentSince(
            sender=r["sender"],
            room_id=r["room__room_id"],
            count=r["n"],
            first_ts=r["first"],
            last_ts=r["last"],
        )
        for r in rows
    ]


def federating_servers(*, our_server: str, limit: int = 20) -> list[tuple[str, int]]:
    """Other servers sharing rooms with us, by how many rooms (most first): whom to tell."""
    rows = (
        RoomServer.objects.exclude(server_name=our_server)
        .values("server_name")
        .annotate(rooms=Count("room_id"))
        .order_by("-rooms", "server_name")[:limit]
    )
    return [(r["server_name"], int(r["rooms"])) for r in rows]

"""Counts and health figures for operators (Politburo's dashboard, metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count

from dagcore.models import Event, ForwardExtremity, Room, User


@dataclass(frozen=True)
class ServerOverview:
    server_name: str
    users: int
    rooms: int
    events: int
    rooms_with_many_extremities: list[tuple[str, int]]


def get_server_overview() -> ServerOverview:
    many = (
        ForwardExtremity.objects.values("room__room_id")
        .annotate(n=Count("id"))
        .filter(n__gt=5)
        .order_by("-n")[:20]
    )
    return ServerOverview(
        server_name=settings.SERVER_NAME,
        users=User.objects.count(),
        rooms=Room.objects.count(),
        events=Event.objects.count(),
        rooms_with_many_extremities=[(r["room__room_id"], r["n"]) for r in many],
    )

"""Counts and health figures for operators (Politburo's dashboard, metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from dagcore.models import Event, Room, User


@dataclass(frozen=True)
class ServerOverview:
    server_name: str
    users: int
    rooms: int
    events: int
    rooms_with_many_extremities: list[tuple[str, int]]


def get_server_overview() -> ServerOverview:
    many = (
        Room.objects.filter(forward_extremity_count__gt=5)
        .order_by("-forward_extremity_count")
        .values_list("room_id", "forward_extremity_count")[:20]
    )
    return ServerOverview(
        server_name=settings.SERVER_NAME,
        users=User.objects.count(),
        rooms=Room.objects.count(),
        events=Event.objects.count(),
        rooms_with_many_extremities=list(many),
    )

"""Reads and writes of the server admins' room operations (``dagcore.actions.room_admin``)."""

from __future__ import annotations

from dagcore.models import Room


def list_room_ids() -> list[str]:
    return list(Room.objects.order_by("id").values_list("room_id", flat=True))

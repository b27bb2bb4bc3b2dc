"""Server admins' room operations (issue 13): listing, details, blocking, deleting, room admin."""

from __future__ import annotations

from dagcore.store import room_admin as store


def list_room_ids() -> list[str]:
    return store.list_room_ids()

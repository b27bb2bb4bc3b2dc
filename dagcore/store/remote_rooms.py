"""Rooms this server knows only from the outside: memberships held "out of band".

An invite from another server, or our user's knock on (or leave from) a room we are
not in, arrives without the room's state; the member event is stored as an outlier and
the user's membership row is written here directly, so ``/sync`` shows the invite or
knock (spec client-server API "Syncing": ``invite`` and ``knock`` sections).
"""

from __future__ import annotations

from dagcore.models import Room, RoomMembership, RoomServer
from dagcore.store.state import PENDING_STREAM_ORDERING


def set_out_of_band_membership(
    room: Room, *, user_id: str, membership: str, event_nid: int, is_local: bool
) -> None:
    """The user's membership in a room whose state we do not hold.

    Written at the pending stream position; the caller settles it with the event's
    position (``state.settle_pending_memberships``) in the same transaction.
    """
    old = RoomMembership.objects.filter(room=room, user_id=user_id).only("id", "membership").first()
    fields = {
        "membership": membership,
        "event_id": event_nid,
        "stream_ordering": PENDING_STREAM_ORDERING,
        "displayname": None,
        "avatar_url": None,
    }
    if old is None:
        RoomMembership.objects.create(room=room, user_id=user_id, is_local=is_local, **fields)
        return
    RoomMembership.objects.filter(id=old.id).update(**fields)
    if old.membership == "join" and membership != "join":
        server = user_id.split(":", 1)[1] if ":" in user_id else ""
        row = RoomServer.objects.filter(room=room, server_name=server).first()
        if row is not None:
            row.joined_count = max(0, row.joined_count - 1)
            row.save(update_fields=["joined_count"])


def is_server_in_room(room: Room, server_name: str) -> bool:
    """Whether ``server_name`` has a joined member in the room (we are resident when it is ours)."""
    return RoomServer.objects.filter(room=room, server_name=server_name, joined_count__gt=0).exists()

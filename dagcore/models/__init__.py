"""Every model of the project lives here, one module per domain (DESIGN.md §2).

Only ``dagcore.store`` queries these models; everything else calls store functions.
"""

from dagcore.models.accounts import AccessToken, Device, RefreshToken, User
from dagcore.models.events import (
    CurrentStateEvent,
    Event,
    EventAuthEdge,
    EventEdge,
    ForwardExtremity,
    StateGroup,
    StateGroupEntry,
)
from dagcore.models.rooms import Room, RoomMembership, RoomServer
from dagcore.models.streams import StreamCounter

__all__ = [
    "AccessToken",
    "Device",
    "RefreshToken",
    "User",
    "CurrentStateEvent",
    "Event",
    "EventAuthEdge",
    "EventEdge",
    "ForwardExtremity",
    "Room",
    "RoomMembership",
    "RoomServer",
    "StateGroup",
    "StateGroupEntry",
    "StreamCounter",
]

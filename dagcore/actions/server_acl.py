"""Server ACLs enforced on what other servers send and ask (``m.room.server_acl``).

Spec: server-server API "Server Access Control Lists (ACLs)": "When a remote server
makes a request, it MUST be verified to be allowed by the server ACLs. If the server
is denied access to a room, the receiving server MUST reply with a 403 HTTP status
code and an errcode of M_FORBIDDEN." — the membership endpoints (``make_*``,
``send_*``, ``invite``) and the reads of a room (``event``, ``state``, ``state_ids``,
``event_auth``, ``backfill``, ``get_missing_events``, ``timestamp_to_event``). In a
``/send`` transaction, a PDU is refused when its origin or its sender's server is
denied, and an EDU about a room is dropped when the origin is (as Synapse does).
The matching itself is pure (:mod:`dagcore.protocol.server_acl`); the ACL is the
room's current state.
"""

from __future__ import annotations

from typing import Any

from dagcore.http.errors import MatrixError
from dagcore.models import Room
from dagcore.protocol.server_acl import server_acl_allows
from dagcore.store import state as state_store

ACL_KEY = ("m.room.server_acl", "")


def get_room_acl(room: Room) -> dict[str, Any] | None:
    """The content of the room's current ``m.room.server_acl`` (None: the room has none)."""
    event = state_store.get_current_state_events(room, [ACL_KEY]).get(ACL_KEY)
    return dict(event.content) if event is not None else None


def server_allowed_in_room(*, room: Room, server_name: str) -> bool:
    return server_acl_allows(get_room_acl(room), server_name)


def check_server_acl(*, room: Room, origin: str) -> None:
    """403 ``M_FORBIDDEN`` when the room's ACL denies ``origin``."""
    if not server_allowed_in_room(room=room, server_name=origin):
        raise MatrixError(403, "M_FORBIDDEN", f"Server {origin[:255]} is banned from this room by its ACL")


class AclCache:
    """The ACL verdicts of one request (a ``/send`` transaction holds up to 50 PDUs and 100
    EDUs, mostly about a handful of rooms): each room's ACL is read once."""

    def __init__(self) -> None:
        self._acls: dict[int, dict[str, Any] | None] = {}

    def allows(self, room: Room, *server_names: str) -> bool:
        if room.pk not in self._acls:
            self._acls[room.pk] = get_room_acl(room)
        acl = self._acls[room.pk]
        return all(server_acl_allows(acl, name) for name in server_names)

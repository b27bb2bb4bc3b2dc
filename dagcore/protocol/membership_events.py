"""Checks on the membership events other servers hand us to complete a handshake.

Spec (server-server API): "Joining Rooms" (``send_join``), "Knocking upon a room"
(``send_knock``), "Leaving Rooms (Rejecting Invites)" (``send_leave``) and
"Inviting to a room" (``invite``). The room and event in the request path must be
the body's: a server that could slip another room's or another event's join into a
request would have us sign or persist something we never agreed to (hardening class 5).

Pure functions over the PDU as received; the Embassy calls them before
:func:`dagcore.protocol.received_pdu.check_received_pdu` and the auth rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagcore.protocol.hashing import compute_event_id
from dagcore.protocol.identifiers import parse_user_id
from dagcore.protocol.room_versions import EventFormat, RoomVersion

__all__ = [
    "MembershipRequestError",
    "check_invite_event",
    "check_join_event",
    "check_knock_event",
    "check_leave_event",
]


class MembershipRequestError(Exception):
    """The request is refused: 400 ``M_BAD_JSON``, or 403 ``M_FORBIDDEN`` (``forbidden``)."""

    def __init__(self, reason: str, *, forbidden: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errcode = "M_FORBIDDEN" if forbidden else "M_BAD_JSON"
        self.http_status = 403 if forbidden else 400


def _server_of(user_id: object, what: str) -> str:
    try:
        return parse_user_id(user_id)[1]
    except ValueError:
        raise MembershipRequestError(f"{what} is not a user ID") from None


def _event_id_of(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    if room_version.event_format is EventFormat.V1:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str):
            raise MembershipRequestError("event has no event_id")
        return event_id
    try:
        return compute_event_id(pdu, room_version)
    except (ValueError, TypeError) as exc:
        raise MembershipRequestError(f"cannot compute the event ID: {exc}") from None


def _check_common(
    pdu: object,
    *,
    membership: str,
    path_room_id: str,
    path_event_id: str,
    room_version: RoomVersion,
) -> Mapping[str, Any]:
    if not isinstance(pdu, Mapping):
        raise MembershipRequestError("the event must be a JSON object")
    if pdu.get("type") != "m.room.member":
        raise MembershipRequestError("the event must be an m.room.member event")
    content = pdu.get("content")
    if not isinstance(content, Mapping) or content.get("membership") != membership:
        raise MembershipRequestError(f"the event's membership must be {membership!r}")
    if pdu.get("room_id") != path_room_id:
        raise MembershipRequestError("the event's room_id is not the room in the path")
    if _event_id_of(pdu, room_version) != path_event_id:
        raise MembershipRequestError("the event is not the event in the path")
    state_key = pdu.get("state_key")
    if not isinstance(state_key, str):
        raise MembershipRequestError("the event has no state_key")
    return pdu


def _check_own_membership(pdu: Mapping[str, Any], origin: str) -> None:
    """send_join/knock/leave: a user changes their own membership, and their server asks."""
    if pdu.get("state_key") != pdu.get("sender"):
        raise MembershipRequestError("the event's state_key must be its sender")
    if _server_of(pdu.get("sender"), "the sender") != origin:
        raise MembershipRequestError("the sender is not a user of the requesting server", forbidden=True)


def check_join_event(
    pdu: object, *, path_room_id: str, path_event_id: str, room_version: RoomVersion, origin: str
) -> Mapping[str, Any]:
    """``PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}``: the body is that join, by the origin's user."""
    event = _check_common(pdu, membership="join", path_room_id=path_room_id, path_event_id=path_event_id,
                          room_version=room_version)  # fmt: skip
    _check_own_membership(event, origin)
    return event


def check_knock_event(
    pdu: object, *, path_room_id: str, path_event_id: str, room_version: RoomVersion, origin: str
) -> Mapping[str, Any]:
    """``PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`` (room versions with knocking)."""
    if not room_version.knock_join_rule:
        raise MembershipRequestError(f"room version {room_version.identifier} has no knocking")
    event = _check_common(pdu, membership="knock", path_room_id=path_room_id, path_event_id=path_event_id,
                          room_version=room_version)  # fmt: skip
    _check_own_membership(event, origin)
    return event


def check_leave_event(
    pdu: object, *, path_room_id: str, path_event_id: str, room_version: RoomVersion, origin: str
) -> Mapping[str, Any]:
    """``PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}``."""
    event = _check_common(pdu, membership="leave", path_room_id=path_room_id, path_event_id=path_event_id,
                          room_version=room_version)  # fmt: skip
    _check_own_membership(event, origin)
    return event


def check_invite_event(
    pdu: object,
    *,
    path_room_id: str,
    path_event_id: str,
    room_version: RoomVersion,
    origin: str,
    our_server_name: str,
) -> Mapping[str, Any]:
    """``PUT /_matrix/federation/v2/invite/{roomId}/{eventId}``: an invite of one of our users,
    sent by a user of the requesting server, for the room and event in the path."""
    event = _check_common(pdu, membership="invite", path_room_id=path_room_id, path_event_id=path_event_id,
                          room_version=room_version)  # fmt: skip
    if _server_of(event.get("state_key"), "the invitee") != our_server_name:
        raise MembershipRequestError("the invitee is not a user of this server", forbidden=True)
    if _server_of(event.get("sender"), "the sender") != origin:
        raise MembershipRequestError("the inviter is not a user of the requesting server", forbidden=True)
    return event

"""The resident side of joins, leaves, knocks and invites.

Spec: https://spec.matrix.org/v1.19/server-server-api/#joining-rooms, #knocking-upon-a-room,
#leaving-rooms-rejecting-invites and #inviting-to-a-room. Each view parses the path and
query, calls one action of :mod:`dagcore.actions.resident_membership` and answers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from dagcore.actions import resident_membership
from embassy.http import FederationRequest, federation_endpoint

#: Spec: "If not provided, the room version is assumed to be either "1" or "2"" (make_join's ``ver``).
DEFAULT_VERSIONS = ["1"]


# Path segments arrive percent-encoded: the ASGI entry routes the raw path (identifiers may
# hold "/"); each is decoded here exactly once.


def _origin(fed: FederationRequest) -> str:
    assert fed.origin is not None  # every view here is authenticated
    return fed.origin


def _versions(fed: FederationRequest) -> list[str]:
    return fed.request.GET.getlist("ver") or DEFAULT_VERSIONS


@federation_endpoint(authenticated=True)
def make_join(fed: FederationRequest, room_id: str, user_id: str) -> dict[str, Any]:
    """GET /_matrix/federation/v1/make_join/{roomId}/{userId}"""
    return resident_membership.get_membership_template(
        origin=_origin(fed),
        room_id=unquote(room_id),
        user_id=unquote(user_id),
        membership="join",
        supported_versions=_versions(fed),
    )


@federation_endpoint(authenticated=True)
def make_knock(fed: FederationRequest, room_id: str, user_id: str) -> dict[str, Any]:
    """GET /_matrix/federation/v1/make_knock/{roomId}/{userId}"""
    return resident_membership.get_membership_template(
        origin=_origin(fed),
        room_id=unquote(room_id),
        user_id=unquote(user_id),
        membership="knock",
        supported_versions=_versions(fed),
    )


@federation_endpoint(authenticated=True)
def make_leave(fed: FederationRequest, room_id: str, user_id: str) -> dict[str, Any]:
    """GET /_matrix/federation/v1/make_leave/{roomId}/{userId}"""
    return resident_membership.get_membership_template(
        origin=_origin(fed),
        room_id=unquote(room_id),
        user_id=unquote(user_id),
        membership="leave",
        supported_versions=None,
    )


@federation_endpoint(authenticated=True, methods=("PUT",))
def send_join(fed: FederationRequest, room_id: str, event_id: str) -> dict[str, Any]:
    """PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}"""
    return resident_membership.do_send_join(
        origin=_origin(fed), room_id=unquote(room_id), event_id=unquote(event_id), pdu=fed.body
    )


@federation_endpoint(authenticated=True, methods=("PUT",))
def send_leave(fed: FederationRequest, room_id: str, event_id: str) -> dict[str, Any]:
    """PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}"""
    return resident_membership.do_send_leave(
        origin=_origin(fed), room_id=unquote(room_id), event_id=unquote(event_id), pdu=fed.body
    )


@federation_endpoint(authenticated=True, methods=("PUT",))
def send_knock(fed: FederationRequest, room_id: str, event_id: str) -> dict[str, Any]:
    """PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}"""
    return resident_membership.do_send_knock(
        origin=_origin(fed), room_id=unquote(room_id), event_id=unquote(event_id), pdu=fed.body
    )


@federation_endpoint(authenticated=True, methods=("PUT",))
def invite(fed: FederationRequest, room_id: str, event_id: str) -> dict[str, Any]:
    """PUT /_matrix/federation/v2/invite/{roomId}/{eventId}"""
    return resident_membership.do_receive_invite(
        origin=_origin(fed), room_id=unquote(room_id), event_id=unquote(event_id), body=fed.body
    )

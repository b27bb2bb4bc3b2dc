"""Account data and room tags (spec: client-server API "Client Config" and "Room Tagging")."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.actions import account_data as actions
from dagcore.actions.push_rules import get_ruleset
from dagcore.http.errors import MatrixError
from dagcore.protocol.identifiers import is_valid_room_id
from tribune.http import RequestContext, client_route, endpoint, methods

MAX_TYPE_LENGTH = 255
MAX_TAG_LENGTH = 255


def _own(ctx: RequestContext, user_id: str) -> None:
    if user_id != ctx.user_id:
        raise MatrixError(403, "M_FORBIDDEN", "Cannot access account data of other users")


def _room(room_id: str) -> str:
    if not is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", f"{room_id[:100]} is not a valid room ID")
    return room_id


def _type(data_type: str) -> str:
    if not data_type or len(data_type) > MAX_TYPE_LENGTH:
        raise MatrixError(400, "M_INVALID_PARAM", "The account data type must be 1-255 characters")
    return data_type


def _managed(data_type: str) -> None:
    if data_type in actions.SERVER_MANAGED_TYPES:
        # Spec: 405 M_BAD_JSON for types the server manages.
        raise MatrixError(405, "M_BAD_JSON", f"Cannot set {data_type} through this API")


@endpoint(allow_guest=True)
def put_global(ctx: RequestContext, user_id: str, data_type: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/user/{userId}/account_data/{type}"""
    _own(ctx, user_id)
    _type(data_type)
    _managed(data_type)
    actions.do_set_account_data(user_id=user_id, room_id=None, data_type=data_type, content=ctx.json_object())
    return {}


@endpoint(allow_guest=True)
def get_global(ctx: RequestContext, user_id: str, data_type: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/user/{userId}/account_data/{type}"""
    _own(ctx, user_id)
    if data_type == "m.push_rules":
        return {"global": get_ruleset(user_id=user_id)}
    content = actions.get_account_data(user_id=user_id, room_id=None, data_type=data_type)
    if content is None:
        raise MatrixError(404, "M_NOT_FOUND", "Account data not found")
    return content


@endpoint(allow_guest=True)
def put_room(ctx: RequestContext, user_id: str, room_id: str, data_type: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
    _own(ctx, user_id)
    _room(room_id)
    _type(data_type)
    _managed(data_type)
    actions.do_set_account_data(
        user_id=user_id, room_id=room_id, data_type=data_type, content=ctx.json_object()
    )
    return {}


@endpoint(allow_guest=True)
def get_room(ctx: RequestContext, user_id: str, room_id: str, data_type: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
    _own(ctx, user_id)
    _room(room_id)
    content = actions.get_account_data(user_id=user_id, room_id=room_id, data_type=data_type)
    if content is None:
        raise MatrixError(404, "M_NOT_FOUND", "Account data not found")
    return content


@endpoint(allow_guest=True)
def get_tags(ctx: RequestContext, user_id: str, room_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags"""
    _own(ctx, user_id)
    _room(room_id)
    return {"tags": actions.get_room_tags(user_id=user_id, room_id=room_id)}


@endpoint(allow_guest=True)
def put_tag(ctx: RequestContext, user_id: str, room_id: str, tag: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""
    _own(ctx, user_id)
    _room(room_id)
    if not tag or len(tag) > MAX_TAG_LENGTH:
        raise MatrixError(400, "M_INVALID_PARAM", "The tag must be 1-255 characters")
    body = ctx.json_object()
    order = body.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int | float)):
        raise MatrixError(400, "M_INVALID_PARAM", "order must be a number")
    actions.do_add_room_tag(user_id=user_id, room_id=room_id, tag=tag, content=body)
    return {}


@endpoint(allow_guest=True)
def delete_tag(ctx: RequestContext, user_id: str, room_id: str, tag: str) -> dict[str, Any]:
    """DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""
    _own(ctx, user_id)
    _room(room_id)
    actions.do_remove_room_tag(user_id=user_id, room_id=room_id, tag=tag)
    return {}


routes: list[URLPattern] = [
    client_route("user/<user_id>/account_data/<data_type>", methods(GET=get_global, PUT=put_global)),
    client_route(
        "user/<user_id>/rooms/<room_id>/account_data/<data_type>", methods(GET=get_room, PUT=put_room)
    ),
    client_route("user/<user_id>/rooms/<room_id>/tags", methods(GET=get_tags)),
    client_route("user/<user_id>/rooms/<room_id>/tags/<tag>", methods(PUT=put_tag, DELETE=delete_tag)),
]

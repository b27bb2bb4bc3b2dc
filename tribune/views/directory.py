"""Room aliases and the public room directory.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-aliases and
https://spec.matrix.org/v1.19/client-server-api/#listing-rooms.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import URLPattern

from dagcore.actions import directory as directory_actions
from dagcore.http.errors import MatrixError
from dagcore.server_keys import get_server_name
from tribune.http import RequestContext, authenticate, client_route, endpoint, methods


@endpoint()
def put_alias(ctx: RequestContext, room_alias: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/directory/room/{roomAlias}"""
    body = ctx.json_object()
    if "room_id" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "room_id is required")
    directory_actions.check_create_alias(user=ctx.require_user(), alias=room_alias, room_id=body["room_id"])
    return {}


@endpoint(auth="none")
def get_alias(ctx: RequestContext, room_alias: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/directory/room/{roomAlias}"""
    room_id, servers = directory_actions.get_alias_target(alias=room_alias)
    return {"room_id": room_id, "servers": servers}


@endpoint()
def delete_alias(ctx: RequestContext, room_alias: str) -> dict[str, Any]:
    """DELETE /_matrix/client/v3/directory/room/{roomAlias}"""
    directory_actions.check_delete_alias(user=ctx.require_user(), alias=room_alias)
    return {}


@endpoint(allow_guest=True)
def get_room_aliases(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/aliases"""
    return {"aliases": directory_actions.access_room_aliases(user_id=ctx.user_id, room_id=room_id)}


@endpoint(auth="none")
def get_visibility(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/directory/list/room/{roomId}"""
    return {"visibility": directory_actions.get_room_visibility(room_id=room_id)}


@endpoint()
def put_visibility(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/directory/list/room/{roomId}"""
    body = ctx.json_object()
    directory_actions.check_set_room_visibility(
        user=ctx.require_user(), room_id=room_id, visibility=body.get("visibility", "public")
    )
    return {}


def _other_server(server: Any) -> str | None:
    """The ``server`` query parameter when it names another server (asked over federation)."""
    if server is None or server == "" or server == get_server_name():
        return None
    if not isinstance(server, str):
        raise MatrixError(400, "M_INVALID_PARAM", "server must be a string")
    return server


def _page_json(page: directory_actions.PublicRoomsPage) -> dict[str, Any]:
    out: dict[str, Any] = {"chunk": page.chunk, "total_room_count_estimate": page.total}
    if page.next_batch is not None:
        out["next_batch"] = page.next_batch
    if page.prev_batch is not None:
        out["prev_batch"] = page.prev_batch
    return out


@endpoint(auth="optional", allow_guest=True)
def get_public_rooms(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/publicRooms"""
    if ctx.user is None and not settings.DAGMA.allow_public_rooms_without_auth:
        authenticate(ctx, required=True, allow_guest=True)
    query = directory_actions.check_public_rooms_params(
        limit=ctx.query.get("limit"), since=ctx.query.get("since")
    )
    server = _other_server(ctx.query.get("server"))
    if server is not None:
        return _page_json(
            directory_actions.get_remote_public_rooms(server_name=server, query=query, post=False)
        )
    return _page_json(directory_actions.get_public_rooms(limit=query.limit, since=query.since))


@endpoint(allow_guest=True)
def search_public_rooms(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/publicRooms"""
    query = directory_actions.check_public_rooms_body(ctx.json_object())
    server = _other_server(ctx.query.get("server"))
    if server is not None:
        return _page_json(
            directory_actions.get_remote_public_rooms(server_name=server, query=query, post=True)
        )
    page = directory_actions.get_public_rooms(
        limit=query.limit, since=query.since, search_term=query.search_term, room_types=query.room_types
    )
    return _page_json(page)


routes: list[URLPattern] = [
    client_route("directory/room/<room_alias>", methods(GET=get_alias, PUT=put_alias, DELETE=delete_alias)),
    client_route("rooms/<room_id>/aliases", methods(GET=get_room_aliases)),
    client_route("directory/list/room/<room_id>", methods(GET=get_visibility, PUT=put_visibility)),
    client_route("publicRooms", methods(GET=get_public_rooms, POST=search_public_rooms)),
]

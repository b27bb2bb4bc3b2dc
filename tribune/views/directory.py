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


def _check_server(server: Any) -> None:
    if server is not None and server != get_server_name():
        if not isinstance(server, str):
            raise MatrixError(400, "M_INVALID_PARAM", "server must be a string")
        raise MatrixError(
            404, "M_NOT_FOUND", "Directories of other servers need federation, not available yet"
        )


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
    limit = ctx.query_int("limit")
    _check_server(ctx.query.get("server"))
    page = directory_actions.get_public_rooms(limit=limit, since=ctx.query.get("since"))
    return _page_json(page)


@endpoint(allow_guest=True)
def search_public_rooms(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/publicRooms"""
    body = ctx.json_object()
    _check_server(ctx.query.get("server"))
    limit = body.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise MatrixError(400, "M_INVALID_PARAM", "limit must be a non-negative integer")
    since = body.get("since")
    if since is not None and not isinstance(since, str):
        raise MatrixError(400, "M_INVALID_PARAM", "since must be a string")
    search_term: str | None = None
    room_types: list[str | None] | None = None
    flt = body.get("filter")
    if flt is not None:
        if not isinstance(flt, dict):
            raise MatrixError(400, "M_INVALID_PARAM", "filter must be an object")
        search_term = flt.get("generic_search_term")
        if search_term is not None and not isinstance(search_term, str):
            raise MatrixError(400, "M_INVALID_PARAM", "filter.generic_search_term must be a string")
        types = flt.get("room_types")
        if types is not None:
            if not isinstance(types, list) or not all(t is None or isinstance(t, str) for t in types):
                raise MatrixError(
                    400, "M_INVALID_PARAM", "filter.room_types must be a list of strings or null"
                )
            room_types = types
    page = directory_actions.get_public_rooms(
        limit=limit, since=since, search_term=search_term or None, room_types=room_types
    )
    return _page_json(page)


routes: list[URLPattern] = [
    client_route("directory/room/<room_alias>", methods(GET=get_alias, PUT=put_alias, DELETE=delete_alias)),
    client_route("rooms/<room_id>/aliases", methods(GET=get_room_aliases)),
    client_route("directory/list/room/<room_id>", methods(GET=get_visibility, PUT=put_visibility)),
    client_route("publicRooms", methods(GET=get_public_rooms, POST=search_public_rooms)),
]

"""Spaces and room summaries (spec: client-server API "Spaces" — ``GET /_matrix/client/v1/rooms/
{roomId}/hierarchy`` — and "Room summaries" — ``GET /_matrix/client/v1/room_summary/{roomIdOrAlias}``)."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.actions import hierarchy as actions
from dagcore.http.errors import MatrixError
from tribune.http import RequestContext, client_route, endpoint, methods


@endpoint(allow_guest=True)
def get_hierarchy(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v1/rooms/{roomId}/hierarchy"""
    suggested = ctx.query.get("suggested_only", "false")
    if suggested not in ("true", "false"):
        raise MatrixError(400, "M_INVALID_PARAM", "suggested_only must be true or false")
    page = actions.get_space_hierarchy(
        user_id=ctx.user_id,
        room_id=room_id,
        suggested_only=suggested == "true",
        limit=ctx.query.get("limit"),
        max_depth=ctx.query.get("max_depth"),
        from_token=ctx.query.get("from"),
    )
    out: dict[str, Any] = {"rooms": page.rooms}
    if page.next_batch is not None:
        out["next_batch"] = page.next_batch
    return out


@endpoint(auth="optional", allow_guest=True)
def get_room_summary(ctx: RequestContext, room_id_or_alias: str) -> dict[str, Any]:
    """GET /_matrix/client/v1/room_summary/{roomIdOrAlias}"""
    return actions.get_room_summary(
        user_id=ctx.user.user_id if ctx.user else None,
        room_id_or_alias=room_id_or_alias,
        via=ctx.query.getlist("via"),
    )


routes: list[URLPattern] = [
    client_route("rooms/<room_id>/hierarchy", methods(GET=get_hierarchy), versions=("v1",)),
    client_route("room_summary/<room_id_or_alias>", methods(GET=get_room_summary), versions=("v1",)),
]

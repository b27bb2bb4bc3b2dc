"""Spaces (spec: client-server API "Spaces" — ``GET /_matrix/client/v1/rooms/{roomId}/hierarchy``)."""

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


routes: list[URLPattern] = [
    client_route("rooms/<room_id>/hierarchy", methods(GET=get_hierarchy), versions=("v1",)),
]

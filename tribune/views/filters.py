"""Filters (spec: client-server API "Filtering")."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.actions.filters import FilterNotFound, do_create_filter, get_filter_definition
from dagcore.http.errors import MatrixError
from tribune import inputs
from tribune.http import RequestContext, client_route, endpoint, methods


def _own(ctx: RequestContext, user_id: str, what: str) -> None:
    if user_id != ctx.user_id:
        raise MatrixError(403, "M_FORBIDDEN", f"Cannot {what} filters for other users")


@endpoint(allow_guest=True, max_body=128 * 1024)
def create_filter(ctx: RequestContext, user_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/user/{userId}/filter"""
    _own(ctx, user_id, "create")
    new_filter = inputs.parse_filter_definition(ctx.json_object())
    return {"filter_id": do_create_filter(user_id=user_id, new_filter=new_filter)}


@endpoint(allow_guest=True)
def get_filter(ctx: RequestContext, user_id: str, filter_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/user/{userId}/filter/{filterId}"""
    _own(ctx, user_id, "get")
    try:
        return get_filter_definition(user_id=user_id, filter_id=filter_id)
    except FilterNotFound:
        raise MatrixError(404, "M_NOT_FOUND", "No such filter") from None


routes: list[URLPattern] = [
    client_route("user/<user_id>/filter", methods(POST=create_filter)),
    client_route("user/<user_id>/filter/<filter_id>", methods(GET=get_filter)),
]

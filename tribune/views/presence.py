"""Presence (spec: client-server API "Presence")."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.actions.presence import access_presence, check_set_presence
from dagcore.http.errors import MatrixError
from tribune.http import RequestContext, client_route, endpoint, methods


@endpoint(allow_guest=True)
def put_status(ctx: RequestContext, user_id: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/presence/{userId}/status"""
    body = ctx.json_object()
    if "presence" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing presence")
    check_set_presence(
        requester=ctx.user_id, user_id=user_id, state=body["presence"], status_msg=body.get("status_msg")
    )
    return {}


@endpoint(allow_guest=True)
def get_status(ctx: RequestContext, user_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/presence/{userId}/status"""
    return access_presence(requester=ctx.user_id, user_id=user_id)


routes: list[URLPattern] = [
    client_route("presence/<user_id>/status", methods(GET=get_status, PUT=put_status)),
]

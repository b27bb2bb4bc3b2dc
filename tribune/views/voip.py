"""Voice over IP (spec: client-server API "Voice over IP" — ``GET /voip/turnServer``)."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.actions import voip as actions
from tribune.http import RequestContext, client_route, endpoint, methods


@endpoint(allow_guest=True)
def turn_server(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/voip/turnServer"""
    return actions.get_turn_server(user_id=ctx.user_id, is_guest=ctx.require_user().is_guest)


routes: list[URLPattern] = [client_route("voip/turnServer", methods(GET=turn_server))]

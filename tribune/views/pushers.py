"""Pushers (spec: client-server API "Push Notifications" — ``GET /pushers``, ``POST /pushers/set``)."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.actions import pushers as actions
from tribune import inputs
from tribune.http import RequestContext, client_route, endpoint, methods


@endpoint()
def get_pushers(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/pushers"""
    return {"pushers": actions.get_pushers(user_id=ctx.user_id)}


@endpoint()
def set_pusher(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/pushers/set"""
    actions.check_set_pusher(
        user_id=ctx.user_id,
        device_key=ctx.device.pk if ctx.device is not None else None,
        request=inputs.parse_set_pusher(ctx.json_object()),
    )
    return {}


routes: list[URLPattern] = [
    client_route("pushers", methods(GET=get_pushers)),
    client_route("pushers/set", methods(POST=set_pusher)),
]

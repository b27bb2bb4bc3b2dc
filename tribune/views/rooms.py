"""Creating, upgrading and reporting rooms.

Spec: https://spec.matrix.org/v1.19/client-server-api/#creation,
#room-upgrades and #reporting-content.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.urls import URLPattern

from dagcore.actions import accounts as account_actions
from dagcore.actions import reports as report_actions
from dagcore.actions.create_room import check_create_room
from dagcore.actions.upgrade_room import check_upgrade_room
from tribune import inputs
from tribune.http import RequestContext, client_route, endpoint, methods


@endpoint(rate_limit="message")
def create_room(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/createRoom"""
    account_actions.check_not_suspended(ctx.user)
    request = inputs.parse_create_room(ctx.json_object())
    if account_actions.is_shadow_banned(ctx.user) and request.invite:
        # Synapse's shadow ban: the room is made, its invites "succeed" and reach nobody.
        request = replace(request, invite=())
    room_id = check_create_room(user=ctx.require_user(), request=request)
    return {"room_id": room_id}


@endpoint()
def upgrade_room(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/upgrade"""
    body = ctx.json_object()
    replacement = check_upgrade_room(
        user=ctx.require_user(),
        room_id=room_id,
        new_version=body.get("new_version"),
        additional_creators=body.get("additional_creators"),
    )
    return {"replacement_room": replacement}


@endpoint(rate_limit="message")
def report_event(ctx: RequestContext, room_id: str, event_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}"""
    body = ctx.json_object()
    report_actions.check_report_event(
        reporter=ctx.user_id,
        room_id=room_id,
        event_id=event_id,
        reason=body.get("reason"),
        score=body.get("score"),
    )
    return {}


@endpoint(rate_limit="message")
def report_room(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/report"""
    body = ctx.json_object()
    report_actions.check_report_room(reporter=ctx.user_id, room_id=room_id, reason=body.get("reason"))
    return {}


@endpoint(rate_limit="message")
def report_user(ctx: RequestContext, user_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/users/{userId}/report"""
    body = ctx.json_object()
    report_actions.check_report_user(reporter=ctx.user_id, user_id=user_id, reason=body.get("reason"))
    return {}


routes: list[URLPattern] = [
    client_route("createRoom", methods(POST=create_room)),
    client_route("rooms/<room_id>/upgrade", methods(POST=upgrade_room)),
    client_route("rooms/<room_id>/report/<event_id>", methods(POST=report_event)),
    client_route("rooms/<room_id>/report", methods(POST=report_room)),
    client_route("users/<user_id>/report", methods(POST=report_user)),
]

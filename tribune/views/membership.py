"""Room membership (spec: https://spec.matrix.org/v1.19/client-server-api/#room-membership)."""

from __future__ import annotations

from typing import Any, Protocol

from django.urls import URLPattern

from dagcore.actions import accounts as account_actions
from dagcore.actions import membership as membership_actions
from dagcore.actions import room_access
from dagcore.events_format import serialize_stored_events
from dagcore.http.errors import MatrixError
from dagcore.store import txns as txn_store
from dagcore.sync.tokens import SyncToken
from tribune.http import RequestContext, client_route, endpoint, methods

MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")


def _via(ctx: RequestContext) -> list[str]:
    # ``server_name`` is the deprecated spelling of ``via`` (spec v1.12).
    return [*ctx.query.getlist("via"), *ctx.query.getlist("server_name")]


@endpoint(allow_guest=True, rate_limit="joins")
def join_room_by_id_or_alias(ctx: RequestContext, room_id_or_alias: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/join/{roomIdOrAlias}"""
    account_actions.check_not_suspended(ctx.user)
    body = ctx.json_object()
    room_id = membership_actions.check_join_room(
        user=ctx.require_user(), room_id_or_alias=room_id_or_alias, reason=body.get("reason"), via=_via(ctx)
    )
    return {"room_id": room_id}


@endpoint(allow_guest=True, rate_limit="joins")
def join_room(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/join"""
    account_actions.check_not_suspended(ctx.user)
    body = ctx.json_object()
    if not room_id.startswith("!"):
        raise MatrixError(400, "M_INVALID_PARAM", "Expected a room ID")
    joined = membership_actions.check_join_room(
        user=ctx.require_user(), room_id_or_alias=room_id, reason=body.get("reason")
    )
    return {"room_id": joined}


@endpoint(rate_limit="joins")
def knock_room(ctx: RequestContext, room_id_or_alias: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/knock/{roomIdOrAlias}"""
    account_actions.check_not_suspended(ctx.user)
    body = ctx.json_object()
    room_id = membership_actions.check_knock_room(
        user=ctx.require_user(), room_id_or_alias=room_id_or_alias, reason=body.get("reason"), via=_via(ctx)
    )
    return {"room_id": room_id}


@endpoint(allow_guest=True)
def leave_room(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/leave"""
    body = ctx.json_object()
    membership_actions.check_leave_room(user_id=ctx.user_id, room_id=room_id, reason=body.get("reason"))
    return {}


@endpoint(allow_guest=True)
def forget_room(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/forget"""
    membership_actions.check_forget_room(user_id=ctx.user_id, room_id=room_id)
    return {}


@endpoint()
def invite_user(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/invite"""
    account_actions.check_not_suspended(ctx.user)
    if account_actions.is_shadow_banned(ctx.user):
        return {}  # a shadow-banned user's invite "succeeds" and reaches nobody
    body = ctx.json_object()
    if "user_id" not in body:
        # Third-party (3PID) invites carry id_server/medium/address instead.
        if "medium" in body or "address" in body:
            raise MatrixError(400, "M_UNRECOGNIZED", "Third-party invites are not supported")
        raise MatrixError(400, "M_MISSING_PARAM", "user_id is required")
    membership_actions.check_invite_user(
        inviter=ctx.user_id, room_id=room_id, invitee=body["user_id"], reason=body.get("reason")
    )
    return {}


class _ActionOnMember(Protocol):
    def __call__(self, *, sender: str, room_id: str, target: Any, reason: Any = None) -> None: ...


def _act_on_member(ctx: RequestContext, room_id: str, action: _ActionOnMember) -> dict[str, Any]:
    """Kick, ban and unban take the same body: the target's ``user_id`` and an optional ``reason``."""
    body = ctx.json_object()
    if "user_id" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "user_id is required")
    action(sender=ctx.user_id, room_id=room_id, target=body["user_id"], reason=body.get("reason"))
    return {}


@endpoint()
def kick_user(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/kick"""
    return _act_on_member(ctx, room_id, membership_actions.check_kick_user)


@endpoint()
def ban_user(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/ban"""
    return _act_on_member(ctx, room_id, membership_actions.check_ban_user)


@endpoint()
def unban_user(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/unban"""
    return _act_on_member(ctx, room_id, membership_actions.check_unban_user)


@endpoint(allow_guest=True)
def joined_rooms(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/joined_rooms"""
    return {"joined_rooms": membership_actions.get_joined_room_ids(user_id=ctx.user_id)}


@endpoint(allow_guest=True)
def get_members(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/members"""
    membership = ctx.query.get("membership")
    not_membership = ctx.query.get("not_membership")
    for name, value in (("membership", membership), ("not_membership", not_membership)):
        if value is not None and value not in MEMBERSHIPS:
            raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be one of {', '.join(MEMBERSHIPS)}")
    at = ctx.query.get("at")
    at_stream = SyncToken.parse(at).events if at else None
    reader = room_access.access_room_history(user_id=ctx.user_id, room_id=room_id)
    events = room_access.access_room_members(
        reader, at_stream=at_stream, membership=membership, not_membership=not_membership
    )
    device_key = txn_store.device_key(device_id=ctx.device_id, token_id=ctx.token_id)
    extras = room_access.get_client_event_extras(
        events, user_id=ctx.user_id, device_key=device_key, with_relations=False, with_prev_content=False
    )
    return {"chunk": serialize_stored_events(events, extras)}


@endpoint(allow_guest=True)
def get_joined_members(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/joined_members"""
    members = room_access.access_joined_members(user_id=ctx.user_id, room_id=room_id)
    joined: dict[str, dict[str, Any]] = {}
    for user_id, displayname, avatar_url in members:
        entry: dict[str, Any] = {}
        if displayname is not None:
            entry["display_name"] = displayname
        if avatar_url is not None:
            entry["avatar_url"] = avatar_url
        joined[user_id] = entry
    return {"joined": joined}


routes: list[URLPattern] = [
    client_route("join/<room_id_or_alias>", methods(POST=join_room_by_id_or_alias)),
    client_route("knock/<room_id_or_alias>", methods(POST=knock_room)),
    client_route("rooms/<room_id>/join", methods(POST=join_room)),
    client_route("rooms/<room_id>/leave", methods(POST=leave_room)),
    client_route("rooms/<room_id>/forget", methods(POST=forget_room)),
    client_route("rooms/<room_id>/invite", methods(POST=invite_user)),
    client_route("rooms/<room_id>/kick", methods(POST=kick_user)),
    client_route("rooms/<room_id>/ban", methods(POST=ban_user)),
    client_route("rooms/<room_id>/unban", methods(POST=unban_user)),
    client_route("joined_rooms", methods(GET=joined_rooms)),
    client_route("rooms/<room_id>/members", methods(GET=get_members)),
    client_route("rooms/<room_id>/joined_members", methods(GET=get_joined_members)),
]

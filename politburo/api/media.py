"""Synapse-compatible media admin API (served by Politburo only, on localhost).

Thin: ``api_endpoint`` authenticates the server admin; each view parses the path/query and hands
them to ``dagcore.actions.media_admin`` (the CLI and the console call the same actions).
Paths and JSON as Synapse's docs/admin_api/media_admin_api.md, statistics.md and
user_admin_api.md ("List/Delete media uploaded by a user").
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from dagcore.actions import media_admin as actions
from dagcore.actions.audit import Actor
from dagcore.http.endpoint import RequestContext
from dagcore.http.errors import MatrixError
from politburo.api.http import api_endpoint


def _actor(ctx: RequestContext) -> Actor:
    return Actor(user_id=ctx.user_id, via="api", ip=ctx.client_ip)


def _bool(ctx: RequestContext, name: str, default: bool) -> bool:
    value = ctx.query.get(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be true or false")
    return value == "true"


def _required_ts(ctx: RequestContext) -> int:
    raw = ctx.query.get("before_ts")
    if raw is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing integer query parameter 'before_ts'")
    if not raw.isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", "before_ts must be a positive integer (ms)")
    return int(raw)


def _size_gt(ctx: RequestContext) -> int:
    raw = ctx.query.get("size_gt", "0")
    if not raw.isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", "size_gt must be a non-negative integer (bytes)")
    return int(raw)


@api_endpoint("GET", "DELETE")
def media(ctx: RequestContext, server_name: str, media_id: str) -> Any:
    """GET / DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}"""
    server_name, media_id = unquote(server_name), unquote(media_id)
    if ctx.request.method == "GET":
        return actions.media_info(server_name=server_name, media_id=media_id)
    result = actions.check_delete_one(actor=_actor(ctx), server_name=server_name, media_id=media_id)
    return {"deleted_media": result.deleted_media, "total": len(result.deleted_media)}


@api_endpoint("POST")
def delete_before(ctx: RequestContext, server_name: str | None = None) -> Any:
    """POST /_synapse/admin/v1/media/delete and (deprecated) /_synapse/admin/v1/media/{serverName}/delete"""
    if server_name is not None and unquote(server_name) != actions.get_server_name():
        raise MatrixError(400, "M_INVALID_PARAM", "Can only delete local media")
    result = actions.do_purge_media(
        actor=_actor(ctx),
        before_ts=_required_ts(ctx),
        size_gt=_size_gt(ctx),
        keep_profiles=_bool(ctx, "keep_profiles", True),
        local=True,
        remote=False,
    )
    return {"deleted_media": result.deleted_media, "total": len(result.deleted_media)}


@api_endpoint("POST")
def purge_media_cache(ctx: RequestContext) -> Any:
    """POST /_synapse/admin/v1/purge_media_cache"""
    result = actions.do_purge_remote_cache(actor=_actor(ctx), before_ts=_required_ts(ctx))
    return {"deleted": result.remote_media}


@api_endpoint("POST")
def quarantine(ctx: RequestContext, server_name: str, media_id: str) -> Any:
    """POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}"""
    actions.do_quarantine_one(actor=_actor(ctx), server_name=unquote(server_name), media_id=unquote(media_id))
    return {}


@api_endpoint("POST")
def unquarantine(ctx: RequestContext, server_name: str, media_id: str) -> Any:
    """POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}"""
    actions.do_unquarantine_one(actor=_actor(ctx), server_name=unquote(server_name), media_id=unquote(media_id))
    return {}


@api_endpoint("POST")
def quarantine_room(ctx: RequestContext, room_id: str) -> Any:
    """POST /_synapse/admin/v1/room/{roomId}/media/quarantine (and the legacy /quarantine_media/{roomId})"""
    return {"num_quarantined": actions.do_quarantine_room_media(actor=_actor(ctx), room_id=unquote(room_id))}


@api_endpoint("POST")
def quarantine_user(ctx: RequestContext, user_id: str) -> Any:
    """POST /_synapse/admin/v1/user/{userId}/media/quarantine"""
    return {"num_quarantined": actions.do_quarantine_user_media(actor=_actor(ctx), user_id=unquote(user_id))}


@api_endpoint("POST")
def protect(ctx: RequestContext, media_id: str) -> Any:
    """POST /_synapse/admin/v1/media/protect/{mediaId}"""
    actions.do_protect(actor=_actor(ctx), media_id=unquote(media_id), protected=True)
    return {}


@api_endpoint("POST")
def unprotect(ctx: RequestContext, media_id: str) -> Any:
    """POST /_synapse/admin/v1/media/unprotect/{mediaId}"""
    actions.do_protect(actor=_actor(ctx), media_id=unquote(media_id), protected=False)
    return {}


@api_endpoint("GET")
def usage(ctx: RequestContext) -> Any:
    """GET /_synapse/admin/v1/statistics/users/media"""
    return actions.media_usage(ctx.query)


@api_endpoint("GET", "DELETE")
def user_media(ctx: RequestContext, user_id: str) -> Any:
    """GET / DELETE /_synapse/admin/v1/users/{userId}/media"""
    user_id = unquote(user_id)
    if ctx.request.method == "GET":
        return actions.list_user_media(user_id=user_id, query=ctx.query)
    return actions.check_delete_user_media(actor=_actor(ctx), user_id=user_id, query=ctx.query)

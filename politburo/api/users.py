"""Synapse-compatible admin API over accounts (served by Politburo only, on localhost).

Thin: ``api_endpoint`` authenticates the admin (``ctx.user``); each view hands the request to
``dagcore.actions.admin_users``.
"""

from __future__ import annotations

from typing import Any

from dagcore import __version__
from dagcore.actions import admin_users as actions
from dagcore.http.endpoint import RequestContext
from politburo.api.http import api_endpoint


@api_endpoint("GET", admin=False)
def server_version(ctx: RequestContext) -> dict[str, Any]:
    """GET /_synapse/admin/v1/server_version (no authentication, as in Synapse)."""
    return {"server_version": f"Dagma {__version__}"}


@api_endpoint("GET")
def users(ctx: RequestContext) -> dict[str, Any]:
    """GET /_synapse/admin/v2/users"""
    page = actions.list_users(ctx.query)
    out: dict[str, Any] = {"users": page.users, "total": page.total}
    if page.next_token is not None:
        out["next_token"] = page.next_token
    return out


@api_endpoint("GET", "PUT")
def user(ctx: RequestContext, user_id: str) -> Any:
    """GET / PUT /_synapse/admin/v2/users/{userId}"""
    if ctx.request.method == "GET":
        return actions.user_json(actions.access_user(user_id))
    created, body = actions.check_put_user(admin=ctx.require_user(), user_id=user_id, body=ctx.json_object())
    return (201 if created else 200), body


@api_endpoint("POST")
def reset_password(ctx: RequestContext, user_id: str) -> dict[str, Any]:
    """POST /_synapse/admin/v1/reset_password/{userId}"""
    actions.check_reset_password(user_id=user_id, body=ctx.json_object())
    return {}


@api_endpoint("POST")
def deactivate(ctx: RequestContext, user_id: str) -> dict[str, Any]:
    """POST /_synapse/admin/v1/deactivate/{userId}"""
    actions.check_deactivate(admin=ctx.require_user(), user_id=user_id, body=ctx.json_object())
    return {"id_server_unbind_result": "success"}

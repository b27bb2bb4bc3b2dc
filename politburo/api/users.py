"""Synapse-compatible admin API over accounts (served by Politburo only, on localhost).

Thin: ``api_endpoint`` authenticates the admin; each view hands the request to ``dagcore.actions.admin_users``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from dagcore import __version__
from dagcore.actions import admin_users as actions
from dagcore.models import User
from politburo.api.http import api_endpoint, json_object_body


@api_endpoint("GET", admin=False)
def server_version(request: HttpRequest) -> dict[str, Any]:
    """GET /_synapse/admin/v1/server_version (no authentication, as in Synapse)."""
    return {"server_version": f"Dagma {__version__}"}


@api_endpoint("GET")
def users(request: HttpRequest, admin: User) -> dict[str, Any]:
    """GET /_synapse/admin/v2/users"""
    page = actions.list_users(request.GET)
    out: dict[str, Any] = {"users": page.users, "total": page.total}
    if page.next_token is not None:
        out["next_token"] = page.next_token
    return out


@api_endpoint("GET", "PUT")
def user(request: HttpRequest, admin: User, user_id: str) -> Any:
    """GET / PUT /_synapse/admin/v2/users/{userId}"""
    if request.method == "GET":
        return actions.user_json(actions.access_user(user_id))
    created, body = actions.check_put_user(admin=admin, user_id=user_id, body=json_object_body(request))
    return (201 if created else 200), body


@api_endpoint("POST")
def reset_password(request: HttpRequest, admin: User, user_id: str) -> dict[str, Any]:
    """POST /_synapse/admin/v1/reset_password/{userId}"""
    actions.check_reset_password(user_id=user_id, body=json_object_body(request))
    return {}


@api_endpoint("POST")
def deactivate(request: HttpRequest, admin: User, user_id: str) -> dict[str, Any]:
    """POST /_synapse/admin/v1/deactivate/{userId}"""
    actions.check_deactivate(admin=admin, user_id=user_id, body=json_object_body(request))
    return {"id_server_unbind_result": "success"}

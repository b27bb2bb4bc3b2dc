"""Synapse-compatible admin API over accounts (served by Politburo only, on localhost).

Thin: each view authenticates the admin and hands the request to ``dagcore.actions.admin_users``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from dagcore import __version__
from dagcore.actions import admin_users as actions
from dagcore.http.errors import MatrixError
from dagcore.http.responses import error_response, json_response
from dagcore.http.tokens import extract_access_token
from dagcore.models import User
from politburo.api.http import json_object_body

AdminView = Callable[..., Any]
logger = logging.getLogger("politburo")


def admin_endpoint(*methods: str) -> Callable[[AdminView], Callable[..., HttpResponse]]:
    """JSON in and out, the caller authenticated as a server admin; errors in the Matrix shape."""

    def decorator(view: AdminView) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, **kwargs: str) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise MatrixError(405, "M_UNRECOGNIZED", f"Method {request.method} not allowed here")
                admin = actions.access_admin(extract_access_token(request))
                # Matched on the raw path (as Tribune does): decode %40 and %3A of user IDs here.
                result = view(request, admin, **{k: unquote(v, errors="strict") for k, v in kwargs.items()})
            except UnicodeDecodeError:
                return error_response(MatrixError(400, "M_INVALID_PARAM", "Path parameters must be UTF-8"))
            except MatrixError as exc:
                return error_response(exc)
            except Exception:
                logger.exception("unhandled error in %s %s", request.method, request.path)
                return error_response(MatrixError(500, "M_UNKNOWN", "Internal server error"))
            if isinstance(result, tuple):
                return json_response(result[1], status=result[0])
            return json_response(result)

        return wrapper

    return decorator


def server_version(request: HttpRequest) -> HttpResponse:
    """GET /_synapse/admin/v1/server_version (no authentication, as in Synapse)."""
    return json_response({"server_version": f"Dagma {__version__}"})


@admin_endpoint("GET")
def users(request: HttpRequest, admin: User) -> dict[str, Any]:
    """GET /_synapse/admin/v2/users"""
    page = actions.list_users(request.GET)
    out: dict[str, Any] = {"users": page.users, "total": page.total}
    if page.next_token is not None:
        out["next_token"] = page.next_token
    return out


@admin_endpoint("GET", "PUT")
def user(request: HttpRequest, admin: User, user_id: str) -> Any:
    """GET / PUT /_synapse/admin/v2/users/{userId}"""
    if request.method == "GET":
        return actions.user_json(actions.access_user(user_id))
    created, body = actions.check_put_user(admin=admin, user_id=user_id, body=json_object_body(request))
    return (201 if created else 200), body


@admin_endpoint("POST")
def reset_password(request: HttpRequest, admin: User, user_id: str) -> dict[str, Any]:
    """POST /_synapse/admin/v1/reset_password/{userId}"""
    actions.check_reset_password(user_id=user_id, body=json_object_body(request))
    return {}


@admin_endpoint("POST")
def deactivate(request: HttpRequest, admin: User, user_id: str) -> dict[str, Any]:
    """POST /_synapse/admin/v1/deactivate/{userId}"""
    actions.check_deactivate(admin=admin, user_id=user_id, body=json_object_body(request))
    return {"id_server_unbind_result": "success"}

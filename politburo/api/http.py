"""The request layer of Politburo's admin API: the shared request wrapper
(``dagcore.http.endpoint``, as Tribune's) with a server admin's access token as its
authentication. JSON in and out, errors in the Matrix shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dagcore.actions.admin_users import access_admin
from dagcore.http.endpoint import Endpoints, RequestContext, View
from dagcore.http.tokens import extract_access_token

#: Largest admin API body (user records and passwords: small).
MAX_BODY = 64 * 1024


def _authenticate_admin(ctx: RequestContext, required: bool, allow_guest: bool) -> None:
    """The server admin the access token belongs to: 401 without a valid token, 403 for others."""
    ctx.user = access_admin(extract_access_token(ctx.request))


_endpoints = Endpoints(authenticator=_authenticate_admin)


def api_endpoint(*methods: str, admin: bool = True) -> Callable[[View], Callable[..., Any]]:
    """Wrap a view ``view(ctx, **path_params)`` answering JSON (a value, or ``(status, value)``)
    to ``methods``; with ``admin`` the caller must be a server admin (``ctx.user``)."""
    return _endpoints(methods=methods, auth="required" if admin else "none", max_body=MAX_BODY)

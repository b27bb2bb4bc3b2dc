"""How a Tribune view is wired: the shared request wrapper with Tribune's authentication.

A view is a plain (or ``async``) function ``view(ctx, **path_params)`` decorated with
:func:`endpoint`; the steps it goes through — method, authentication, rate limit, JSON
body, path parameters and the NUL check, the answer's shape — are those of
``dagcore.http.endpoint`` (Politburo uses the same wrapper with its own authentication).

URL patterns are built with :func:`client_route`: path parameters are matched
on the *raw* (still percent-encoded) path segment and decoded by the wrapper, so event
IDs containing ``/`` (room v3) and aliases containing ``#``/``:`` work.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, re_path

from dagcore.actions import accounts as account_actions
from dagcore.http.endpoint import (
    EndpointOptions,
    Endpoints,
    RequestContext,
    View,
    matrix_error_answer,
    method_not_allowed,
)
from dagcore.http.errors import MatrixError
from dagcore.http.tokens import extract_access_token
from dagcore.store import accounts as account_store

__all__ = [
    "RequestContext",
    "authenticate",
    "client_route",
    "endpoint",
    "error_answer",
    "method_not_allowed",
    "methods",
]

#: What a view raised, as the spec's error JSON (the shared wrapper's answer).
error_answer = matrix_error_answer


def authenticate(
    ctx: RequestContext, *, required: bool, allow_guest: bool = True, allow_locked: bool = False
) -> None:
    token = extract_access_token(ctx.request)
    if token is None and not required:
        return
    owner = account_actions.access_token_owner(token, allow_locked=allow_locked)
    if owner.user.is_guest and not allow_guest:
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests cannot use this endpoint")
    # Only application services may act as other users (spec: "Identity assertion").
    if ctx.request.GET.get("user_id") not in (None, owner.user.user_id):
        raise MatrixError(403, "M_FORBIDDEN", "Only application services can masquerade as other users")
    ctx.user = owner.user
    ctx.device = owner.device
    ctx.token_id = owner.token_id
    ctx.ratelimit_override = owner.ratelimit_override
    ctx.access_token = token
    if owner.device is not None:
        # "Last seen" of GET /devices: a write at most once a minute per device.
        account_store.touch_device(
            owner.device, ip=ctx.client_ip, user_agent=ctx.request.META.get("HTTP_USER_AGENT")
        )


def _authenticator(ctx: RequestContext, options: EndpointOptions) -> None:
    authenticate(
        ctx, required=options.auth == "required", allow_guest=options.allow_guest,
        allow_locked=options.allow_locked,
    )  # fmt: skip


#: ``@endpoint(auth="optional", allow_guest=True, rate_limit="message")``: the options are
#: those of ``dagcore.http.endpoint.Endpoints``.
endpoint = Endpoints(authenticator=_authenticator)


def methods(**handlers: View) -> Callable[..., HttpResponse]:
    """One URL, several methods: ``methods(GET=get_view, PUT=put_view)``."""

    def dispatch(request: HttpRequest, **kwargs: str) -> HttpResponse:
        handler = handlers.get(request.method or "GET")
        if handler is None:
            return method_not_allowed(request)
        result: HttpResponse = handler(request, **kwargs)
        return result

    dispatch.allowed_methods = sorted(handlers)  # type: ignore[attr-defined]
    return dispatch


_PARAM_RE = re.compile(r"<(\w+)>")


def client_route(
    pattern: str, view: Callable[..., HttpResponse], *, versions: tuple[str, ...] = ("v3", "r0")
) -> URLPattern:
    """``client_route("rooms/<room_id>/join", view)`` -> ``/_matrix/client/(v3|r0)/rooms/{roomId}/join``."""
    regex = _PARAM_RE.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", pattern)
    prefix = "|".join(re.escape(v) for v in versions)
    return re_path(rf"^_matrix/client/(?:{prefix})/{regex}$", view)

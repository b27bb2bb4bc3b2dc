"""How a Tribune view is wired: parse, authenticate, rate-limit, call, shape the answer.

A view is a plain function ``view(ctx, **path_params)`` decorated with
:func:`endpoint`; it returns a JSON-able dict (200), ``(status, dict)`` or an
``HttpResponse``, and raises :class:`~dagcore.http.errors.MatrixError` for
4xx answers. Every failure path — bad JSON, missing token, unknown exception —
ends as the spec's ``{"errcode", "error"}`` JSON, never HTML.

URL patterns are built with :func:`client_route`: path parameters are matched
on the *raw* (still percent-encoded) path segment and decoded here, so event
IDs containing ``/`` (room v3) and aliases containing ``#``/``:`` work.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.db import DataError
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, re_path

from dagcore.actions import accounts as account_actions
from dagcore.http.errors import MatrixError
from dagcore.http.responses import error_response, json_response
from dagcore.http.tokens import extract_access_token
from dagcore.models import Device, User
from dagcore.protocol.canonical_json import JsonError, parse_json_body
from dagcore.ratelimit import check_rate_limit
from dagcore.store import accounts as account_store

logger = logging.getLogger("tribune")

#: Largest JSON body accepted by ordinary endpoints (media uploads have their own limit).
MAX_JSON_BODY = 1024 * 1024
#: Integer query parameters (limits, timestamps) stay within canonical JSON's range.
MAX_QUERY_INT = 2**53
_QUERY_INT_RE = re.compile(r"-?[0-9]{1,16}")


@dataclass
class RequestContext:
    request: HttpRequest
    user: User | None = None
    device: Device | None = None
    token_id: int | None = None
    access_token: str | None = None
    body: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        assert self.user is not None
        return self.user.user_id

    @property
    def device_id(self) -> str | None:
        return self.device.device_id if self.device else None

    @property
    def query(self) -> Any:
        return self.request.GET

    @property
    def client_ip(self) -> str:
        if settings.DAGMA_TRUST_X_FORWARDED_FOR:
            fwd = self.request.META.get("HTTP_X_FORWARDED_FOR")
            if fwd:
                return str(fwd.split(",")[0].strip())
        return str(self.request.META.get("REMOTE_ADDR") or "unknown")

    def require_user(self) -> User:
        if self.user is None:
            raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
        return self.user

    def query_int(self, name: str, *, default: int | None = None, minimum: int = 0) -> int | None:
        """An integer query parameter: plain ASCII digits (``-`` allowed if ``minimum`` < 0).

        ``int()`` alone would also take ``" 1"``, ``"1_000"`` and non-ASCII digits,
        and build numbers of any length; everything not in ``[minimum, 2**53]`` is
        400 M_INVALID_PARAM. Callers clamp to their own maximum.
        """
        raw = self.request.GET.get(name)
        if raw is None or raw == "":
            return default
        if not _QUERY_INT_RE.fullmatch(raw):
            raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be an integer")
        value = int(raw)
        if value < minimum or abs(value) > MAX_QUERY_INT:
            raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be an integer of at least {minimum}")
        return value

    def json_object(self) -> dict[str, Any]:
        """The body, which must be a JSON object."""
        if not isinstance(self.body, dict):
            raise MatrixError(400, "M_BAD_JSON", "The request body must be a JSON object")
        return self.body


def authenticate(ctx: RequestContext, *, required: bool, allow_guest: bool = True) -> None:
    token = extract_access_token(ctx.request)
    if token is None and not required:
        return
    owner = account_actions.access_token_owner(token)
    if owner.user.is_guest and not allow_guest:
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests cannot use this endpoint")
    # Only application services may act as other users (spec: "Identity assertion").
    if ctx.request.GET.get("user_id") not in (None, owner.user.user_id):
        raise MatrixError(403, "M_FORBIDDEN", "Only application services can masquerade as other users")
    ctx.user = owner.user
    ctx.device = owner.device
    ctx.token_id = owner.token_id
    ctx.access_token = token
    if owner.device is not None:
        # "Last seen" of GET /devices: a write at most once a minute per device.
        account_store.touch_device(
            owner.device, ip=ctx.client_ip, user_agent=ctx.request.META.get("HTTP_USER_AGENT")
        )


def rate_limit(ctx: RequestContext, action: str, key: str | None = None) -> None:
    """Apply the configured ``rc_<action>`` limit (admins are exempt, as in Synapse)."""
    if ctx.user is not None and ctx.user.is_admin:
        return
    conf = getattr(settings.DAGMA, f"rc_{action}", None)
    if not conf:
        return
    result = check_rate_limit(
        action,
        key or (ctx.user.user_id if ctx.user else ctx.client_ip),
        per_second=conf["per_second"],
        burst_count=conf["burst_count"],
    )
    if not result.allowed:
        raise MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=result.retry_after_ms)


def parse_body(request: HttpRequest, *, max_body: int) -> Any:
    length = request.META.get("CONTENT_LENGTH")
    try:
        declared = int(length) if length else 0
    except ValueError:
        raise MatrixError(400, "M_BAD_JSON", "Invalid Content-Length") from None
    if declared > max_body:
        raise MatrixError(413, "M_TOO_LARGE", f"Request body larger than {max_body} bytes")
    raw = request.body
    if len(raw) > max_body:
        raise MatrixError(413, "M_TOO_LARGE", f"Request body larger than {max_body} bytes")
    if not raw.strip():
        return {}  # Several endpoints (e.g. /join, /logout) are POSTed without a body.
    try:
        return parse_json_body(raw, allow_nul=False)
    except JsonError as exc:
        raise MatrixError(400, exc.errcode, str(exc)) from None


def decode_path_params(kwargs: Mapping[str, str]) -> dict[str, str]:
    """Path parameters matched on the raw path, percent-decoded (``UnicodeDecodeError`` if not UTF-8)."""
    return {k: unquote(v, errors="strict") for k, v in kwargs.items()}


def error_answer(request: HttpRequest, exc: Exception) -> HttpResponse:
    """What a view raised, as the spec's error JSON: its own ``MatrixError``, 400 for a path
    parameter that is not UTF-8 or a value the database refuses, anything else 500 (logged
    with its traceback)."""
    if isinstance(exc, MatrixError):
        return error_response(exc)
    if isinstance(exc, UnicodeDecodeError):
        return error_response(MatrixError(400, "M_INVALID_PARAM", "Path parameters must be UTF-8"))
    if isinstance(exc, DataError):
        # A value the database refuses (too long for its column, out of range): the input
        # is at fault, but a validation is missing upstream, so it is logged like a bug.
        logger.error("database refused a value in %s %s", request.method, request.path, exc_info=exc)
        return error_response(MatrixError(400, "M_INVALID_PARAM", "A value is too long or out of range"))
    logger.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return error_response(MatrixError(500, "M_UNKNOWN", "Internal server error"))


def method_not_allowed(request: HttpRequest) -> HttpResponse:
    return error_response(MatrixError(405, "M_UNRECOGNIZED", f"Method {request.method} not allowed here"))


View = Callable[..., Any]


def endpoint(
    *,
    auth: bool | str = True,
    allow_guest: bool = False,
    rate_limited: str | None = None,
    max_body: int = MAX_JSON_BODY,
    raw_body: bool = False,
) -> Callable[[View], View]:
    """Wrap a view: ``auth`` is True (required), False, or "optional"."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, **kwargs: str) -> HttpResponse:
            ctx = RequestContext(request)
            try:
                if auth:
                    authenticate(ctx, required=auth is True, allow_guest=allow_guest)
                if rate_limited:
                    rate_limit(ctx, rate_limited)
                if not raw_body and request.method in ("POST", "PUT"):
                    ctx.body = parse_body(request, max_body=max_body)
                params = decode_path_params(kwargs)
                if any("\x00" in v for v in params.values()):
                    # No identifier may hold NUL (and PostgreSQL text cannot store it).
                    raise MatrixError(400, "M_INVALID_PARAM", "Path parameters must not contain NUL")
                if "%00" in request.META.get("QUERY_STRING", ""):
                    raise MatrixError(400, "M_INVALID_PARAM", "Query parameters must not contain NUL")
                result = view(ctx, **params)
            except Exception as exc:
                return error_answer(request, exc)
            if isinstance(result, HttpResponse):
                return result
            if isinstance(result, tuple):
                status, data = result
                return json_response(data, status=status)
            return json_response(result)

        wrapper.dagma_endpoint = True  # type: ignore[attr-defined]
        return wrapper

    return decorator


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

"""The one request wrapper of every server: parse, authenticate, rate-limit, call, shape the answer.

A view is a function ``view(ctx, **path_params)`` (plain or ``async``) decorated by an
:class:`Endpoints` instance, each interface having its own (Tribune's authenticates
access tokens, Politburo's server admins). It returns a JSON-able value (200),
``(status, value)`` or an ``HttpResponse``, and raises :class:`MatrixError` for 4xx
answers. Every failure path — bad JSON, missing token, unknown exception — ends as the
endpoint's error answer (by default the spec's ``{"errcode", "error"}`` JSON), never HTML.

The steps, in order, each one an option of the endpoint (:class:`EndpointOptions`):

1. the method, when the endpoint lists its methods (405 otherwise);
2. authentication: required, optional or none, guests allowed or not;
3. the rate limit ``rc_<name>`` of the operator config (per user, else per address);
4. the JSON body, for the methods that carry one (size-capped, strict parser, no NUL);
5. path parameters, percent-decoded here (they are matched on the raw path), and the
   NUL check: no identifier may hold NUL (PostgreSQL text cannot store it), in the path
   or in the query string;
6. the view; its answer shaped as JSON unless it is a response already (a streaming one
   only where the endpoint allows it).

``async`` views run steps 2-4 in one thread hop (they touch the database), or — with
``deferred_auth`` — leave them to the view, which calls :meth:`RequestContext.prepare`
from the thread it does its own database work in (``/sync``: no extra hop on the hottest
path). The wrapper checks that it did.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from dagcore.http.errors import MatrixError
from dagcore.http.responses import error_response, json_response
from dagcore.models import Device, User
from dagcore.observability.requests import note_requester
from dagcore.protocol.canonical_json import JsonError, parse_json_body
from dagcore.ratelimit import check_rate_limit
from dagcore.store.transaction import DataError

logger = logging.getLogger("dagma.http")

#: Largest JSON body accepted by default (media uploads read theirs themselves).
MAX_JSON_BODY = 1024 * 1024
#: Integer query parameters (limits, timestamps) stay within canonical JSON's range.
MAX_QUERY_INT = 2**53
_QUERY_INT_RE = re.compile(r"-?[0-9]{1,16}")

AuthMode = Literal["required", "optional", "none"]
#: ``(ctx, options)``: fills ``ctx.user`` (and device, token) or raises 401/403, as the
#: endpoint's ``auth``, ``allow_guest`` and ``allow_locked`` say.
Authenticator = Callable[["RequestContext", "EndpointOptions"], None]
#: What a view raised, as the response the client gets.
ErrorAnswer = Callable[[HttpRequest, Exception], HttpResponse]
View = Callable[..., Any]


# --------------------------------------------------------------------------- the request


@dataclass
class RequestContext:
    """What a view gets: the request, who sent it, its parsed body."""

    request: HttpRequest
    user: User | None = None
    device: Device | None = None
    token_id: int | None = None
    access_token: str | None = None
    #: The user's ``override_ratelimit`` (per second, burst), which the authenticator reads
    #: with the access token (Tribune's, in the token owner's one query); None: none set.
    ratelimit_override: tuple[int, int] | None = None
    body: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Steps 2-4 for a ``deferred_auth`` view (see :meth:`prepare`); None once done.
    _pending: Callable[[], None] | None = field(default=None, repr=False)

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

    def prepare(self) -> None:
        """Authenticate, rate-limit and parse the body now (``deferred_auth`` views; call from
        a thread, not the event loop). Does nothing the second time."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending()

    @property
    def prepared(self) -> bool:
        return self._pending is None


# --------------------------------------------------------------------------- the steps


def rate_limit(ctx: RequestContext, action: str, key: str | None = None) -> None:
    """Apply the configured ``rc_<action>`` limit (admins are exempt, as in Synapse)."""
    if ctx.user is not None and ctx.user.is_admin:
        return
    conf = getattr(settings.DAGMA, f"rc_{action}", None)
    if not conf:
        return
    per_second, burst_count = conf["per_second"], conf["burst_count"]
    if action == "message" and ctx.user is not None:
        # An operator's override for this user (Synapse's override_ratelimit; 0/0: not limited),
        # read with the access token (no statement of its own on PUT /send).
        override = ctx.ratelimit_override
        if override is not None:
            if override == (0, 0):
                return
            per_second, burst_count = override
    result = check_rate_limit(
        action,
        key or (ctx.user.user_id if ctx.user else ctx.client_ip),
        per_second=per_second,
        burst_count=burst_count,
    )
    if not result.allowed:
        raise MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=result.retry_after_ms)


def parse_body(request: HttpRequest, *, max_body: int) -> Any:
    """The JSON body (``{}`` when empty), at most ``max_body`` bytes, NUL refused."""
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


def check_no_nul(request: HttpRequest, params: Mapping[str, str]) -> None:
    """No identifier may hold NUL (and PostgreSQL text cannot store it): 400 if one does."""
    if any("\x00" in v for v in params.values()):
        raise MatrixError(400, "M_INVALID_PARAM", "Path parameters must not contain NUL")
    if "%00" in request.META.get("QUERY_STRING", ""):
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameters must not contain NUL")


def matrix_error_answer(request: HttpRequest, exc: Exception) -> HttpResponse:
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


# --------------------------------------------------------------------------- the wrapper


@dataclass(frozen=True)
class EndpointOptions:
    """How one endpoint treats its requests (the defaults suit an authenticated JSON API)."""

    #: Methods answered (others: 405); None when a dispatcher routes methods to views.
    methods: frozenset[str] | None = None
    auth: AuthMode = "required"
    allow_guest: bool = False
    #: Serve a locked account's token: spec "Account locking" (v1.12) keeps ``/logout`` and
    #: ``/logout/all`` usable while every other endpoint answers 401 ``M_USER_LOCKED``.
    allow_locked: bool = False
    #: ``rc_<rate_limit>`` of the operator config, applied per user (per address without one).
    rate_limit: str | None = None
    #: Methods whose body is parsed as JSON into ``ctx.body`` (empty: the view reads the
    #: body itself, e.g. media uploads, which stream it).
    body_methods: frozenset[str] = frozenset({"POST", "PUT"})
    max_body: int = MAX_JSON_BODY
    #: Refuse NUL in path parameters and the query string (400 M_INVALID_PARAM).
    reject_nul: bool = True
    #: Whether the view may answer with a ``StreamingHttpResponse`` (large media files).
    streaming: bool = False
    #: ``async`` views only: the view calls ``ctx.prepare()`` itself (see the module doc).
    deferred_auth: bool = False


class Endpoints:
    """One interface's endpoint decorator: its authenticator and error answer, shared steps.

    ``endpoints(auth="optional", rate_limit="message")`` wraps a view with those options.
    """

    def __init__(
        self, *, authenticator: Authenticator, error_answer: ErrorAnswer = matrix_error_answer
    ) -> None:
        self.authenticator = authenticator
        self.error_answer = error_answer

    def __call__(
        self,
        *,
        methods: tuple[str, ...] | None = None,
        auth: AuthMode = "required",
        allow_guest: bool = False,
        allow_locked: bool = False,
        rate_limit: str | None = None,
        body_methods: tuple[str, ...] = ("POST", "PUT"),
        max_body: int = MAX_JSON_BODY,
        reject_nul: bool = True,
        streaming: bool = False,
        deferred_auth: bool = False,
    ) -> Callable[[View], Callable[..., Any]]:
        options = EndpointOptions(
            methods=frozenset(methods) if methods is not None else None,
            auth=auth,
            allow_guest=allow_guest,
            allow_locked=allow_locked,
            rate_limit=rate_limit,
            body_methods=frozenset(body_methods),
            max_body=max_body,
            reject_nul=reject_nul,
            streaming=streaming,
            deferred_auth=deferred_auth,
        )
        return functools.partial(self.wrap, options=options)

    # ----------------------------------------------------------------- steps 2-4

    def _prepare(self, ctx: RequestContext, options: EndpointOptions) -> None:
        if options.auth != "none":
            self.authenticator(ctx, options)
            if ctx.user is not None:
                note_requester(ctx.user.user_id)  # the access line's requester
        if options.rate_limit is not None:
            rate_limit(ctx, options.rate_limit)
        if ctx.request.method in options.body_methods:
            ctx.body = parse_body(ctx.request, max_body=options.max_body)

    def _params(
        self, request: HttpRequest, kwargs: Mapping[str, str], options: EndpointOptions
    ) -> dict[str, str]:
        params = decode_path_params(kwargs)
        if options.reject_nul:
            check_no_nul(request, params)
        return params

    def _answer(self, request: HttpRequest, result: Any, options: EndpointOptions) -> HttpResponseBase:
        if isinstance(result, HttpResponseBase):
            if isinstance(result, StreamingHttpResponse) and not options.streaming:
                return self.error_answer(
                    request, TypeError("a streaming answer from a non-streaming endpoint")
                )
            return result
        if isinstance(result, tuple):
            status, data = result
            return json_response(data, status=status)
        return json_response(result)

    # ----------------------------------------------------------------- wrappers

    def wrap(self, view: View, *, options: EndpointOptions) -> Callable[..., Any]:
        if options.deferred_auth and not inspect.iscoroutinefunction(view):
            raise TypeError("deferred_auth is for async views (plain views run every step in their thread)")
        wrapper: Any = (
            self._wrap_async(view, options)
            if inspect.iscoroutinefunction(view)
            else self._wrap_sync(view, options)
        )
        wrapper.dagma_endpoint = options
        # Bearer tokens, not cookies, authenticate these APIs: no CSRF to guard against.
        wrapper.csrf_exempt = True
        return wrapper

    def _wrap_sync(self, view: View, options: EndpointOptions) -> Callable[..., HttpResponseBase]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, **kwargs: str) -> HttpResponseBase:
            if options.methods is not None and request.method not in options.methods:
                return method_not_allowed(request)
            ctx = RequestContext(request)
            try:
                self._prepare(ctx, options)
                result = view(ctx, **self._params(request, kwargs, options))
                return self._answer(request, result, options)
            except Exception as exc:
                return self.error_answer(request, exc)

        return wrapper

    def _wrap_async(self, view: View, options: EndpointOptions) -> Callable[..., Any]:
        touches_storage = options.auth != "none" or options.rate_limit is not None

        # Typed loosely: Django's stubs know only synchronous views, yet route coroutines fine.
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, **kwargs: str) -> HttpResponseBase:
            if options.methods is not None and request.method not in options.methods:
                return method_not_allowed(request)
            ctx = RequestContext(request)
            try:
                if options.deferred_auth:
                    ctx._pending = functools.partial(self._prepare, ctx, options)
                elif touches_storage or request.method in options.body_methods:
                    # One thread hop for the steps that may touch the database or Redis.
                    await sync_to_async(self._prepare)(ctx, options)
                result = await view(ctx, **self._params(request, kwargs, options))
                if not ctx.prepared:
                    raise RuntimeError(f"{view.__qualname__} did not call ctx.prepare()")
                return self._answer(request, result, options)
            except Exception as exc:
                return self.error_answer(request, exc)

        return wrapper

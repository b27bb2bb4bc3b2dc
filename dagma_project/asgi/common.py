"""Building blocks of the ASGI entries (one per server, plus the combined quick-start one)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import Any

from asgiref.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
)
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from dagcore.http.endpoint import MAX_JSON_BODY
from dagcore.notifier import AfterResponse, holding_for_response
from dagcore.observability.metrics import HTTP_DB_SECONDS, HTTP_REQUESTS, HTTP_SECONDS, method_label
from dagcore.observability.requests import RequestObservation, begin_request, note_route
from dagma_project.middleware import CORS_HEADERS
from dagma_project.startup import on_process_start

logger = logging.getLogger("dagma.asgi")
access_logger = logging.getLogger("dagma.access")

Scope = dict[str, Any]


#: The status of a request whose client went away before its answer (as nginx logs it).
CLIENT_GONE = 499


class ObserveRequests:
    """Outermost layer of every server: one access line and the HTTP metrics per request.

    It times the request to the end of its answer and takes the status from the answer's
    start; what only inner layers know — the route pattern, who asked, the database time —
    they note into the request's :class:`RequestObservation` (``dagcore.observability.requests``).
    The line names the route *pattern*, never the path or query string (which may hold an
    access token or a room alias), and the requester: a user ID, or a federation origin.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        observation = begin_request(str(scope.get("method", "")))
        status = CLIENT_GONE

        async def observed_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            # Answered 500 by the server (daphne) if nothing was sent; a cancellation (the
            # client went away) is no Exception and stays 499.
            status = 500 if status == CLIENT_GONE else status
            raise
        finally:
            _finish(observation, status, perf_counter() - started)


#: ``(route, method, status)`` -> its three series (``labels()`` validates and locks each time:
#: a third of the observer's cost). Bounded: routes are the URLconfs' patterns.
_series: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}


def _finish(observation: RequestObservation, status: int, seconds: float) -> None:
    method = method_label(observation.method)
    route = observation.route
    series = _series.get((route, method, status))
    if series is None:
        series = _series[(route, method, status)] = (
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_SECONDS.labels(route, method),
            HTTP_DB_SECONDS.labels(route, method),
        )
    requests, durations, db_durations = series
    requests.inc()
    durations.observe(seconds)
    db_durations.observe(observation.clock.seconds)
    if access_logger.isEnabledFor(logging.INFO):
        duration_ms = round(seconds * 1000, 1)
        db_ms = round(observation.clock.seconds * 1000, 1)
        access_logger.info(
            "%s %s %d %.1fms db=%.1fms/%dq %s",
            method, route, status, duration_ms, db_ms, observation.clock.count, observation.requester or "-",
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": duration_ms,
                "db_ms": db_ms,
                "db_queries": observation.clock.count,
                "requester": observation.requester,
            },
        )  # fmt: skip


class RawPathMiddleware:
    """Route on the raw, still percent-encoded path.

    ASGI servers hand Django a decoded ``path``, which turns an event ID such
    as ``$abc%2Fdef`` into two path segments. Matrix identifiers may contain
    ``/``, so Dagma matches URL patterns against the raw path and the
    endpoint wrapper (``tribune.http``) decodes each parameter exactly once.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path")
            if raw:
                path = raw.split(b"?", 1)[0].decode("latin-1")
                scope = dict(scope, path=path)
        await self.app(scope, receive, send)


class UrlconfMiddleware:
    """Serve one listener with a chosen URLconf (quick start: several servers in one process)."""

    def __init__(self, app: Any, urlconf: str) -> None:
        self.app = app
        self.urlconf = urlconf

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "http":
            scope = dict(scope, dagma_urlconf=self.urlconf)
        await self.app(scope, receive, send)


class PortRouter:
    """Dispatch by the local port the connection arrived on (one app per listener)."""

    def __init__(self, apps: dict[int, Any], default: Any) -> None:
        self.apps = apps
        self.default = default

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        server = scope.get("server")
        app = self.apps.get(server[1], self.default) if server and server[1] is not None else self.default
        await app(scope, receive, send)


#: Request bodies a direct view reads (a larger one is cut here, one byte over, so the view's
#: own size check answers 413 ``M_TOO_LARGE``).
MAX_DIRECT_BODY = MAX_JSON_BODY + 1
#: Threads running direct plain (synchronous) views: long-lived, never one per request.
_direct_threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dagma-direct")


def _run_plain_view(view: Any, request: HttpRequest, kwargs: dict[str, Any]) -> HttpResponse:
    try:
        response: HttpResponse = view(request, **kwargs)
        return response
    finally:
        # What Django's ``request_finished`` does: the connection goes back to the pool.
        close_old_connections()


class DirectViews:
    """Serve the few views marked ``asgi_direct = (methods...)`` (the ``/sync`` long-poll,
    ``PUT /send``) without Django's request handler (DESIGN.md §1: keep the hottest paths
    free of thread hops).

    Django's ASGI handler runs every request in a context of its own whose first
    thread-sensitive call starts a thread and whose end joins it, and sends the request
    signals through that thread: on this box that was a fifth of the CPU of a woken
    ``/sync`` and of a ``/send`` (bench/results). A marked view needs none of it: it is an
    ``endpoint``-wrapped view, which authenticates, parses and answers errors itself; an
    async one runs on the loop, a plain one on a pool of long-lived threads. It gets no
    middleware but the CORS headers added here. Other methods (``OPTIONS`` preflights)
    and everything else go to Django as before.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        #: ``(urlconf, path) -> (view, kwargs, methods, route)`` for paths that resolved to a marked view.
        self._direct: dict[tuple[str, str], tuple[Any, dict[str, Any], tuple[str, ...], str]] = {}

    def _match(self, scope: Scope) -> tuple[Any, dict[str, Any]] | None:
        urlconf = scope.get("dagma_urlconf") or settings.ROOT_URLCONF
        key = (urlconf, scope["path"])
        found = self._direct.get(key)
        if found is None:
            try:
                match = resolve(scope["path"], urlconf)
            except Resolver404:
                return None
            methods = getattr(match.func, "asgi_direct", ())
            if not methods:
                return None
            found = (match.func, dict(match.kwargs), tuple(methods), str(match.route))
            if "<" not in str(match.route) and len(self._direct) < 64:
                # Only fixed paths (``/sync``): paths with parameters are resolved every time.
                self._direct[key] = found
        view, kwargs, methods, route = found
        if scope["method"] not in methods:
            return None
        note_route(route)
        return view, kwargs

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        found = self._match(scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        view, kwargs = found
        body = bytearray()
        message = await receive()
        while message["type"] == "http.request":
            if len(body) < MAX_DIRECT_BODY:
                body += message.get("body", b"")
            if not message.get("more_body"):
                break
            message = await receive()
        if message["type"] == "http.disconnect":
            return
        request = ASGIRequest(scope, io.BytesIO(bytes(body[:MAX_DIRECT_BODY])))
        if inspect.iscoroutinefunction(view):
            # The /sync long-poll: what it commits (presence) must not wait for its answer.
            await self._answer(view, request, kwargs, receive, send, scope)
            return
        # What a plain view's commits hold for after its response (``dagcore.notifier.after_response``:
        # the /sync wake of a sent event), run once it is written, or the view failed or its client left.
        held = AfterResponse()
        token = holding_for_response.set(held)
        try:
            await self._answer(view, request, kwargs, receive, send, scope)
        finally:
            holding_for_response.reset(token)
            for call in held.close():
                try:
                    call()
                except Exception:
                    logger.exception("a call held for after the response failed")

    async def _answer(
        self,
        view: Any,
        request: HttpRequest,
        kwargs: dict[str, Any],
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        scope: Scope,
    ) -> None:
        if inspect.iscoroutinefunction(view):
            answer = asyncio.ensure_future(view(request, **kwargs))
        else:
            loop = asyncio.get_running_loop()
            run = functools.partial(contextvars.copy_context().run, _run_plain_view, view, request, kwargs)
            answer = asyncio.ensure_future(loop.run_in_executor(_direct_threads, run))
        # A client that goes away cancels its long-poll (as Django's handler does).
        gone = asyncio.ensure_future(receive())
        done, _ = await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        if answer not in done:
            answer.cancel()
            await asyncio.gather(answer, return_exceptions=True)
            return
        gone.cancel()
        try:
            response: HttpResponse = answer.result()
        except Exception:
            logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
            response = HttpResponse(b'{"errcode":"M_UNKNOWN","error":"Internal server error"}', status=500,
                                    content_type="application/json")  # fmt: skip
        for name, value in CORS_HEADERS.items():
            if name not in response:
                response[name] = value
        content = response.content
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
        headers.append((b"Content-Length", str(len(content)).encode()))
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": headers,
            "trailers": False,
        }
        await send(start)
        end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": content, "more_body": False}
        await send(end)


def django_app() -> Any:
    """Django's ASGI handler with Dagma's raw-path routing, the views served directly
    (``DirectViews``) and the startup hooks."""

    app = get_asgi_application()

    on_process_start()
    return ObserveRequests(RawPathMiddleware(DirectViews(app)))

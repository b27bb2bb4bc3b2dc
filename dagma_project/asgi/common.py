"""Building blocks of the ASGI entries (one per server, plus the combined quick-start one)."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable
from django.core.asgi import get_asgi_application

from dagma_project.startup import on_process_start

logger = logging.getLogger("dagma.asgi")

Scope = dict[str, Any]


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


def django_app() -> Any:
    """Django's ASGI handler with Dagma's raw-path routing and startup hooks."""

    app = get_asgi_application()

    on_process_start()
    return RawPathMiddleware(app)

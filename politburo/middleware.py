"""Politburo's own middleware (its settings replace the public servers' stack with this one).

* **Host check** (DNS rebinding): a page on another site that makes its name resolve to
  127.0.0.1 still sends its own name as ``Host``; only loopback names and the operator's
  ``admin_allowed_hosts`` are answered, anything else is 400.
* **Headers** on every answer: no caching, no framing, a CSP without inline script, no
  referrer. CORS only on the JSON API (``/_synapse/``, bearer tokens: web admin UIs served
  elsewhere use it, as with Synapse); never on the console's cookie-authenticated pages.
* **Idle shutdown** (``admin_idle_shutdown``): the process stops itself after that long
  without a request (measured on ``dagcore.clock``, so tests move the clock instead of waiting).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from dagcore.clock import duration_ms, now_ms

logger = logging.getLogger("dagma.politburo")

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
API_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
}


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header, lower case (``[::1]:8009`` -> ``[::1]``)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host_header: str | None) -> bool:
    if not host_header:
        return False
    name = host_name(host_header)
    extra = {h.strip().lower() for h in settings.DAGMA.admin_allowed_hosts}
    return name in LOOPBACK_HOSTS or name in extra


class _IdleWatch:
    """Stops the process once no request came for ``admin_idle_shutdown``."""

    def __init__(self) -> None:
        self.last_request_ms = now_ms()
        self.started = False
        self.lock = threading.Lock()

    def start(self, idle_ms: int) -> None:
        with self.lock:
            if self.started:
                return
            self.started = True
        threading.Thread(target=self._run, args=(idle_ms,), name="politburo-idle", daemon=True).start()

    def _run(self, idle_ms: int) -> None:
        wake = threading.Event()
        while not wake.wait(1.0):
            idle = now_ms() - self.last_request_ms
            if idle >= idle_ms:
                logger.warning("politburo idle for %d s: stopping (admin_idle_shutdown)", idle // 1000)
                os.kill(os.getpid(), signal.SIGTERM)
                return


idle_watch = _IdleWatch()


class PolitburoMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        idle = settings.DAGMA.admin_idle_shutdown
        if idle is not None and not getattr(settings, "DAGMA_NO_HEARTBEAT", False):
            idle_watch.start(duration_ms(idle) or 0)

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        idle_watch.last_request_ms = now_ms()
        if not host_allowed(request.META.get("HTTP_HOST")):
            response: HttpResponseBase = HttpResponse(
                b"Politburo answers only under a loopback name or one in admin_allowed_hosts.\n",
                status=400,
                content_type="text/plain",
            )
        elif request.path.startswith("/_synapse/") and request.method == "OPTIONS":
            response = HttpResponse(status=204)
        else:
            response = self.get_response(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if request.path.startswith("/_synapse/"):
            for key, value in API_CORS_HEADERS.items():
                response.headers.setdefault(key, value)
        return response

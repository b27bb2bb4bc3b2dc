"""Process-wide HTTP middleware. Async-capable, so it adds no thread hop on async views."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from dagcore.observability.requests import note_route

CORS_HEADERS = {
    # Spec: client-server API "Web Browser Clients" — every client endpoint, errors included.
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
    "Access-Control-Expose-Headers": "Content-Disposition, Content-Type, Content-Length",
}


class _AsyncCapableMiddleware:
    """Serves sync and async stacks alike: a coroutine function exactly when the next handler
    is one, so Django needs no adapter (and no thread hop) around it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        raise NotImplementedError


class CorsMiddleware(_AsyncCapableMiddleware):
    """CORS headers on every response; ``OPTIONS`` preflight answered 204 without auth."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        if request.method == "OPTIONS":
            return self._add(HttpResponse(status=204))
        return self._add(self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if request.method == "OPTIONS":
            return self._add(HttpResponse(status=204))
        response: HttpResponse = await self.get_response(request)
        return self._add(response)

    @staticmethod
    def _add(response: HttpResponse) -> HttpResponse:
        for key, value in CORS_HEADERS.items():
            if key not in response:
                response[key] = value
        return response


class ListenerUrlconfMiddleware(_AsyncCapableMiddleware):
    """Honour the URLconf a listener was given (``UrlconfMiddleware`` in the ASGI stack)."""

    def __call__(self, request: HttpRequest) -> Any:
        scope = getattr(request, "scope", None)
        if scope and scope.get("dagma_urlconf"):
            request.urlconf = scope["dagma_urlconf"]
        return self.get_response(request)


class RouteMiddleware(_AsyncCapableMiddleware):
    """Tell the request observer which URL pattern answered (``request.resolver_match``, set
    once Django resolved the path): the route label of the access line and the metrics."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        response = self.get_response(request)
        self._note(request)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = await self.get_response(request)
        self._note(request)
        return response

    @staticmethod
    def _note(request: HttpRequest) -> None:
        match = getattr(request, "resolver_match", None)
        if match is not None and match.route:
            note_route(match.route)
        elif request.method == "OPTIONS":
            note_route("preflight")

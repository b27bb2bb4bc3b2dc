"""TEST-ONLY endpoints, mounted only with ``enable_test_hooks`` (never on a real server).

They let the test suite observe and drive a live server instead of sleeping:

- ``GET /_dagma/test/waiters?user_id=...``: how many ``/sync`` long-polls of the user wait
  in *this* process (a test waits for 1 before it makes the change that should wake it).
- ``POST /_dagma/test/clock`` ``{"advance_ms": n}``: move the homeserver's clock forward
  (every process of it, see ``dagcore.clock``) to test expiry and back-off.

No authentication: the option that mounts them is for throw-away test servers only.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, re_path

from dagcore.clock import advance_test_clock
from dagcore.http.errors import MatrixError
from dagcore.http.responses import error_response, json_response
from tribune.http import RequestContext, endpoint, method_not_allowed
from tribune.sync import notifier


async def waiters(request: HttpRequest) -> HttpResponse:
    """GET /_dagma/test/waiters?user_id=@alice:example.org

    Async, so that it reads the waiter registry on the event loop, its only user.
    """
    if request.method != "GET":
        return method_not_allowed(request)
    user_id = request.GET.get("user_id")
    if not user_id:
        return error_response(MatrixError(400, "M_MISSING_PARAM", "Missing user_id"))
    return json_response({"user_id": user_id, "waiters": notifier.registry.count_waiters(user_id)})


@endpoint(methods=("POST",), auth="none")
def clock(ctx: RequestContext) -> dict[str, Any] | HttpResponse:
    """POST /_dagma/test/clock {"advance_ms": 60000}"""
    advance = ctx.body.get("advance_ms") if isinstance(ctx.body, dict) else None
    if not isinstance(advance, int) or isinstance(advance, bool) or advance < 0:
        raise MatrixError(400, "M_INVALID_PARAM", "advance_ms must be a non-negative integer")
    return {"offset_ms": advance_test_clock(ms=advance)}


routes: list[URLPattern] = [
    re_path(r"^_dagma/test/waiters$", waiters),
    re_path(r"^_dagma/test/clock$", clock),
]

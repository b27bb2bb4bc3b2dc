"""What one HTTP request did, gathered for its access line and its metrics.

The request observer (``dagma_project.asgi.common.ObserveRequests``, outermost in every
server) opens a :class:`RequestObservation`; the layers that learn something fill it in:
the URL resolver the route pattern (:func:`note_route`), the endpoint wrappers who asked
(:func:`note_requester`: a user ID, or the origin server of a federation request), the
database wrapper the statements' time. A context variable carries it, so the threads a
request hands work to (``sync_to_async``, the direct views' pool) fill in the same one.
"""

from __future__ import annotations

import functools
import re
from contextvars import ContextVar
from dataclasses import dataclass, field

from dagcore.store.timing import QueryClock, start_query_clock


@dataclass
class RequestObservation:
    method: str
    #: The URL pattern that matched, as :func:`route_label` writes it (never the raw path).
    route: str = "unmatched"
    #: The authenticated user ID, or the origin server of a signed federation request.
    requester: str | None = None
    clock: QueryClock = field(default_factory=QueryClock)


_current: ContextVar[RequestObservation | None] = ContextVar("dagma_request", default=None)


def begin_request(method: str) -> RequestObservation:
    """Observe the request handled in this context (the caller's own task)."""
    observation = RequestObservation(method=method, clock=start_query_clock())
    _current.set(observation)
    return observation


def current_request() -> RequestObservation | None:
    return _current.get()


def note_route(route: str) -> None:
    """The request matched this URL pattern (a Django route regex)."""
    observation = _current.get()
    if observation is not None:
        observation.route = route_label(route)


def note_requester(requester: str) -> None:
    """Who sent the request: a user ID (access token checked) or a server name (signature checked)."""
    observation = _current.get()
    if observation is not None:
        observation.requester = requester


_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")
_ALTERNATIVES = re.compile(r"\(\?:([^|)]*)(?:\|[^)]*)?\)")


@functools.lru_cache(maxsize=1024)
def route_label(route: str) -> str:
    """A route regex as a readable pattern: ``^_matrix/client/(?:v3|r0)/rooms/(?P<room_id>[^/]+)/join$``
    -> ``/_matrix/client/v3/rooms/{room_id}/join``. Bounded by the URLconfs' patterns (cached)."""
    if route in ("^.*$", ".*"):
        return "unrecognized"  # the JSON 404 catch-all
    if route == "preflight":
        return "preflight"  # an OPTIONS request answered before any URL matched (CORS)
    text = route.removeprefix("^").removesuffix("$")
    text = _NAMED_GROUP.sub(lambda m: "{" + m.group(1) + "}", text)
    text = _ALTERNATIVES.sub(lambda m: m.group(1), text)
    text = text.replace("/?", "").replace("\\", "").replace("^", "").replace("$", "")
    return "/" + text.lstrip("/")

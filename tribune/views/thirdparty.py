"""Third-party networks (spec: client-server API "Third-party Networks").

Protocols come from application services (bridges); Dagma has none, so the
protocol list is empty, every protocol is unknown and lookups find nothing.
Element asks for the protocol list at start-up and for its room directory;
answering the spec's shapes keeps it from logging errors.
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.http.errors import MatrixError
from tribune.http import RequestContext, client_route, endpoint, methods


def _unknown_protocol(protocol: str) -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", f"Unknown third-party protocol {protocol!r}")


@endpoint()
def protocols(ctx: RequestContext) -> dict[str, Any]:
    """GET /thirdparty/protocols — no bridges, no protocols."""
    return {}


@endpoint()
def protocol_metadata(ctx: RequestContext, protocol: str) -> dict[str, Any]:
    """GET /thirdparty/protocol/{protocol}, and the location/user queries of a protocol."""
    raise _unknown_protocol(protocol)


@endpoint()
def lookup(ctx: RequestContext) -> list[Any]:
    """GET /thirdparty/location?alias= and /thirdparty/user?userid= — nothing is bridged."""
    return []


routes: list[URLPattern] = [
    client_route("thirdparty/protocols", methods(GET=protocols)),
    client_route("thirdparty/protocol/<protocol>", methods(GET=protocol_metadata)),
    client_route("thirdparty/location/<protocol>", methods(GET=protocol_metadata)),
    client_route("thirdparty/user/<protocol>", methods(GET=protocol_metadata)),
    client_route("thirdparty/location", methods(GET=lookup)),
    client_route("thirdparty/user", methods(GET=lookup)),
]

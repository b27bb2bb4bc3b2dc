"""Synapse's federation admin API (``docs/usage/administration/admin_api/federation.md``):
destinations, their rooms, and "reset connection". Served by Politburo only.

Thin: parse the query, call ``dagcore.actions.federation_admin``, shape Synapse's JSON.
"""

from __future__ import annotations

from typing import Any

from dagcore.actions import federation_admin as actions
from dagcore.actions.audit import Actor
from dagcore.http.endpoint import RequestContext
from dagcore.http.errors import MatrixError
from dagcore.http.params import count_param
from politburo.api.http import api_endpoint

MAX_LIMIT = 1000


def _paging(ctx: RequestContext) -> tuple[int, int, bool]:
    offset = count_param(ctx.query.get("from"), "from", default=0, maximum=10**9)
    limit = count_param(ctx.query.get("limit"), "limit", default=100, maximum=MAX_LIMIT)
    direction = ctx.query.get("dir") or "f"
    if direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", "dir must be one of f, b")
    return offset, limit, direction == "b"


def _unknown(destination: str) -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", "Unknown destination")


@api_endpoint("GET")
def destinations(ctx: RequestContext) -> dict[str, Any]:
    """GET /_synapse/admin/v1/federation/destinations"""
    offset, limit, backwards = _paging(ctx)
    order_by = ctx.query.get("order_by") or "destination"
    if order_by not in actions.ORDER_BY:
        raise MatrixError(400, "M_INVALID_PARAM", f"order_by must be one of {', '.join(actions.ORDER_BY)}")
    name = ctx.query.get("destination") or None
    if name is not None and len(name) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "destination is too long")
    page = actions.get_destinations(
        name_contains=name, order_by=order_by, backwards=backwards, offset=offset, limit=limit
    )
    out: dict[str, Any] = {"destinations": page.destinations, "total": page.total}
    if page.next_token is not None:
        out["next_token"] = str(page.next_token)
    return out


@api_endpoint("GET")
def destination(ctx: RequestContext, destination: str) -> dict[str, Any]:
    """GET /_synapse/admin/v1/federation/destinations/{destination}"""
    try:
        return actions.get_destination(destination)
    except actions.UnknownDestination:
        raise _unknown(destination) from None


@api_endpoint("GET")
def destination_rooms(ctx: RequestContext, destination: str) -> dict[str, Any]:
    """GET /_synapse/admin/v1/federation/destinations/{destination}/rooms"""
    offset, limit, backwards = _paging(ctx)
    try:
        page = actions.get_destination_rooms(
            destination=destination, backwards=backwards, offset=offset, limit=limit
        )
    except actions.UnknownDestination:
        raise _unknown(destination) from None
    out: dict[str, Any] = {"rooms": page.rooms, "total": page.total}
    if page.next_token is not None:
        out["next_token"] = str(page.next_token)
    return out


@api_endpoint("POST")
def reset_connection(ctx: RequestContext, destination: str) -> dict[str, Any]:
    """POST /_synapse/admin/v1/federation/destinations/{destination}/reset_connection"""
    actor = Actor(user_id=ctx.user_id, via="api", ip=ctx.client_ip)
    try:
        actions.do_reset_destination(destination=destination, actor=actor)
    except actions.UnknownDestination:
        raise _unknown(destination) from None
    except actions.NothingToReset:
        raise MatrixError(
            400, "M_UNKNOWN", "The retry timing does not need to be reset for this destination."
        ) from None
    return {}

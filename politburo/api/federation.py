"""Synapse's federation admin API (``docs/usage/administration/admin_api/federation.md``):
destinations, their rooms, and "reset connection". Served by Politburo only.

Thin: parse the query, call ``dagcore.actions.federation_admin``, shape Synapse's JSON.
"""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from dagcore.actions import federation_admin as actions
from dagcore.http.errors import MatrixError
from politburo.api.base import AdminAPIView, api_actor, page_json, page_params, str_param


def _backwards(request: Request) -> bool:
    direction = request.query_params.get("dir") or "f"
    if direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'dir' must be one of ['f', 'b']")
    return direction == "b"


def _unknown() -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", "Unknown destination")


class Destinations(AdminAPIView):
    """GET /_synapse/admin/v1/federation/destinations"""

    def get(self, request: Request) -> Response:
        offset, limit = page_params(request)
        backwards = _backwards(request)
        order_by = request.query_params.get("order_by") or "destination"
        if order_by not in actions.ORDER_BY:
            raise MatrixError(
                400, "M_INVALID_PARAM", f"Query parameter 'order_by' must be one of {list(actions.ORDER_BY)}"
            )
        page = actions.get_destinations(
            name_contains=str_param(request, "destination"), order_by=order_by, backwards=backwards,
            offset=offset, limit=limit,
        )  # fmt: skip
        return Response(page_json("destinations", page.destinations, offset=offset, total=page.total))


class Destination(AdminAPIView):
    """GET /_synapse/admin/v1/federation/destinations/{destination}"""

    def get(self, request: Request, destination: str) -> Response:
        try:
            return Response(actions.get_destination(destination))
        except actions.UnknownDestination:
            raise _unknown() from None


class DestinationRooms(AdminAPIView):
    """GET /_synapse/admin/v1/federation/destinations/{destination}/rooms"""

    def get(self, request: Request, destination: str) -> Response:
        offset, limit = page_params(request)
        try:
            page = actions.get_destination_rooms(
                destination=destination, backwards=_backwards(request), offset=offset, limit=limit
            )
        except actions.UnknownDestination:
            raise _unknown() from None
        return Response(page_json("rooms", page.rooms, offset=offset, total=page.total))


class ResetConnection(AdminAPIView):
    """POST /_synapse/admin/v1/federation/destinations/{destination}/reset_connection"""

    def post(self, request: Request, destination: str) -> Response:
        try:
            actions.do_reset_destination(destination=destination, actor=api_actor(request))
        except actions.UnknownDestination:
            raise _unknown() from None
        except actions.NothingToReset:
            raise MatrixError(
                400, "M_UNKNOWN", "The retry timing does not need to be reset for this destination."
            ) from None
        return Response({})

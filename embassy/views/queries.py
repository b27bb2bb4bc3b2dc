"""Queries other servers make about ours (spec: https://spec.matrix.org/v1.19/server-server-api/#querying-for-information)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from dagcore.actions.directory import (
    check_public_rooms_body,
    check_public_rooms_params,
    get_alias_target,
    get_public_rooms_for_server,
)
from dagcore.actions.hierarchy import get_hierarchy_for_server
from dagcore.actions.profile import get_federated_profile
from dagcore.http.errors import MatrixError, missing_param
from embassy.http import FederationRequest, federation_endpoint


@federation_endpoint(authenticated=True)
def query_directory(fed: FederationRequest) -> dict[str, Any]:
    """GET /_matrix/federation/v1/query/directory?room_alias="""
    alias = fed.request.GET.get("room_alias")
    if not alias:
        raise missing_param("room_alias is required")
    room_id, servers = get_alias_target(alias=alias)
    return {"room_id": room_id, "servers": servers}


@federation_endpoint(authenticated=True)
def query_profile(fed: FederationRequest) -> dict[str, Any]:
    """GET /_matrix/federation/v1/query/profile?user_id=[&field=]"""
    user_id = fed.request.GET.get("user_id")
    if not user_id:
        raise missing_param("user_id is required")
    return get_federated_profile(user_id=user_id, field=fed.request.GET.get("field"))


@federation_endpoint(authenticated=True, methods=("GET", "POST"))
def public_rooms(fed: FederationRequest) -> dict[str, Any]:
    """GET and POST /_matrix/federation/v1/publicRooms"""
    if fed.request.method == "POST":
        if not isinstance(fed.body, dict):
            raise MatrixError(400, "M_NOT_JSON", "The body must be a JSON object")
        query = check_public_rooms_body(fed.body)
    else:
        query = check_public_rooms_params(
            limit=fed.request.GET.get("limit"), since=fed.request.GET.get("since")
        )
    page = get_public_rooms_for_server(query=query)
    out: dict[str, Any] = {"chunk": page.chunk, "total_room_count_estimate": page.total}
    if page.next_batch is not None:
        out["next_batch"] = page.next_batch
    if page.prev_batch is not None:
        out["prev_batch"] = page.prev_batch
    return out


@federation_endpoint(authenticated=True)
def hierarchy(fed: FederationRequest, room_id: str) -> dict[str, Any]:
    """GET /_matrix/federation/v1/hierarchy/{roomId}"""
    suggested = fed.request.GET.get("suggested_only", "false")
    if suggested not in ("true", "false"):
        raise MatrixError(400, "M_INVALID_PARAM", "suggested_only must be true or false")
    return get_hierarchy_for_server(
        origin=str(fed.origin),
        room_id=unquote(room_id),  # matched on the raw path
        suggested_only=suggested == "true",
    )

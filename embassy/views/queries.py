"""Queries other servers make about ours (spec: https://spec.matrix.org/v1.19/server-server-api/#querying-for-information)."""

from __future__ import annotations

from typing import Any

from dagcore.actions.directory import get_alias_target
from dagcore.http.errors import missing_param
from embassy.http import FederationRequest, federation_endpoint


@federation_endpoint(authenticated=True)
def query_directory(fed: FederationRequest) -> dict[str, Any]:
    """GET /_matrix/federation/v1/query/directory?room_alias="""
    alias = fed.request.GET.get("room_alias")
    if not alias:
        raise missing_param("room_alias is required")
    room_id, servers = get_alias_target(alias=alias)
    return {"room_id": room_id, "servers": servers}

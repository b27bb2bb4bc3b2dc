"""Questions this server asks other servers about names they own.

Spec: https://spec.matrix.org/v1.19/server-server-api/#querying-for-information
(``GET /_matrix/federation/v1/query/directory``: the room an alias of that server names,
and servers in the room to join it through; ``query/profile``: a user's public profile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dagcore.federation.client import FederationError, FederationHttpError, encode_path, get_federation_client
from dagcore.http.errors import MatrixError
from dagcore.protocol.identifiers import is_valid_room_id, is_valid_server_name

#: An alias answer is a room ID and a list of server names.
DIRECTORY_MAX_BYTES = 256 * 1024
DIRECTORY_TIMEOUT_S = 30.0
MAX_SERVERS = 100


@dataclass(frozen=True)
class AliasTarget:
    room_id: str
    servers: list[str]


def query_remote_alias(*, alias: str, server_name: str) -> AliasTarget:
    """Ask ``server_name`` (the alias's server) which room ``alias`` names.

    404 ``M_NOT_FOUND`` when that server does not know the alias; 502 naming the server
    when it cannot be asked or answers something that is not an alias answer.
    """
    try:
        answer = get_federation_client().get_json(
            server_name,
            "/_matrix/federation/v1/query/directory",
            query={"room_alias": alias},
            max_bytes=DIRECTORY_MAX_BYTES,
            timeout=DIRECTORY_TIMEOUT_S,
        )
    except FederationHttpError as exc:
        if exc.status == 404:
            raise MatrixError(404, "M_NOT_FOUND", f"Room alias not found on {server_name[:255]}") from None
        raise MatrixError(502, "M_UNKNOWN", f"Looking up the alias failed: {exc}") from None
    except FederationError as exc:
        raise MatrixError(502, "M_UNKNOWN", f"Looking up the alias failed: {exc}") from None
    room_id = answer.get("room_id")
    servers = answer.get("servers")
    if not is_valid_room_id(room_id) or not isinstance(servers, list):
        raise MatrixError(
            502, "M_UNKNOWN", f"{server_name[:255]}: the alias answer is not a room ID and servers"
        )
    valid = [s for s in servers[:MAX_SERVERS] if isinstance(s, str) and is_valid_server_name(s)]
    assert isinstance(room_id, str)
    return AliasTarget(room_id=room_id, servers=valid)


#: A profile answer is two short strings (and perhaps a few more fields we drop).
PROFILE_MAX_BYTES = 64 * 1024
PROFILE_TIMEOUT_S = 10.0


def query_remote_profile(*, user_id: str, server_name: str) -> dict[str, Any]:
    """Ask ``server_name`` for the public profile of its user ``user_id``
    (``GET /_matrix/federation/v1/query/profile``, no ``field``: the whole profile).

    404 ``M_NOT_FOUND`` / 403 ``M_FORBIDDEN`` as that server answers them; 502 naming the
    server when it cannot be asked or its answer is not a JSON object.
    """
    try:
        return get_federation_client().get_json(
            server_name,
            "/_matrix/federation/v1/query/profile",
            query={"user_id": user_id},
            max_bytes=PROFILE_MAX_BYTES,
            timeout=PROFILE_TIMEOUT_S,
        )
    except FederationHttpError as exc:
        if exc.status == 404:
            raise MatrixError(404, "M_NOT_FOUND", f"Profile not found on {server_name[:255]}") from None
        if exc.status == 403:
            raise MatrixError(
                403, "M_FORBIDDEN", f"{server_name[:255]} does not share this profile over federation"
            ) from None
        raise MatrixError(502, "M_UNKNOWN", f"Looking up the profile failed: {exc}") from None
    except FederationError as exc:
        raise MatrixError(502, "M_UNKNOWN", f"Looking up the profile failed: {exc}") from None


#: A directory page: up to a few hundred room summaries.
PUBLIC_ROOMS_MAX_BYTES = 4 * 1024 * 1024
PUBLIC_ROOMS_TIMEOUT_S = 30.0


def query_remote_public_rooms(
    *, server_name: str, body: dict[str, Any] | None, params: dict[str, str] | None
) -> dict[str, Any]:
    """Another server's public room directory (``GET``, or ``POST`` when ``body`` is given,
    ``/_matrix/federation/v1/publicRooms``). Errors name the server: 403/404 as it answers
    them, 502 when it cannot be asked or its answer is not a JSON object."""
    client = get_federation_client()
    path = "/_matrix/federation/v1/publicRooms"
    try:
        if body is not None:
            return client.post_json(
                server_name, path, body, max_bytes=PUBLIC_ROOMS_MAX_BYTES, timeout=PUBLIC_ROOMS_TIMEOUT_S
            )
        return client.get_json(
            server_name,
            path,
            query=params or None,
            max_bytes=PUBLIC_ROOMS_MAX_BYTES,
            timeout=PUBLIC_ROOMS_TIMEOUT_S,
        )
    except FederationHttpError as exc:
        if exc.status in (403, 404):
            errcode = "M_FORBIDDEN" if exc.status == 403 else "M_NOT_FOUND"
            raise MatrixError(
                exc.status, errcode, f"{server_name[:255]} refused to list its public rooms ({exc.reason})"
            ) from None
        raise MatrixError(502, "M_UNKNOWN", f"Listing public rooms failed: {exc}") from None
    except FederationError as exc:
        raise MatrixError(502, "M_UNKNOWN", f"Listing public rooms failed: {exc}") from None


#: A hierarchy answer: one space, its children's summaries and their ``m.space.child`` events.
HIERARCHY_MAX_BYTES = 4 * 1024 * 1024
HIERARCHY_TIMEOUT_S = 10.0


def query_remote_hierarchy(*, server_name: str, room_id: str, suggested_only: bool) -> dict[str, Any]:
    """``GET /_matrix/federation/v1/hierarchy/{roomId}`` on ``server_name``: the raw JSON object;
    :class:`~dagcore.federation.client.FederationError` when it cannot be had."""
    return get_federation_client().get_json(
        server_name,
        encode_path("/_matrix/federation/v1/hierarchy/{}", room_id),
        query={"suggested_only": "true" if suggested_only else "false"},
        max_bytes=HIERARCHY_MAX_BYTES,
        timeout=HIERARCHY_TIMEOUT_S,
    )

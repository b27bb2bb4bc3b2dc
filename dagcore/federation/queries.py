"""Questions this server asks other servers about names they own.

Spec: https://spec.matrix.org/v1.19/server-server-api/#querying-for-information
(``GET /_matrix/federation/v1/query/directory``: the room an alias of that server names,
and servers in the room to join it through).
"""

from __future__ import annotations

from dataclasses import dataclass

from dagcore.federation.client import FederationError, FederationHttpError, get_federation_client
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

"""Devices and E2EE keys of our users, for other servers.

Spec: https://spec.matrix.org/v1.19/server-server-api/#end-to-end-encryption
(``/user/keys/query``, ``/user/keys/claim``) and #device-management
(``/user/devices/{userId}``). Only our own users are answered: another server's
users are not ours to tell about (``/user/devices`` refuses them with 400, as
Synapse does; the two POSTs leave them out of the answer).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from dagcore.actions import e2e_keys, federated_keys
from dagcore.http.errors import MatrixError
from dagcore.protocol.identifiers import parse_user_id
from dagcore.server_keys import get_server_name
from embassy.http import FederationRequest, federation_endpoint


def _our_user(raw: str) -> str:
    user_id = unquote(raw)
    try:
        _, server = parse_user_id(user_id)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "Not a user ID") from None
    if server != get_server_name():
        raise MatrixError(400, "M_INVALID_PARAM", "The user is not a user of this server")
    return user_id


def _object_body(fed: FederationRequest, field: str) -> Any:
    if not isinstance(fed.body, dict):
        raise MatrixError(400, "M_NOT_JSON", "The body must be a JSON object")
    if field not in fed.body:
        raise MatrixError(400, "M_MISSING_PARAM", f"{field} is required")
    return fed.body[field]


def _ours(users: dict[str, Any]) -> dict[str, Any]:
    ours = get_server_name()
    return {u: v for u, v in users.items() if u.partition(":")[2] == ours}


@federation_endpoint(authenticated=True)
def user_devices(fed: FederationRequest, user_id: str) -> dict[str, Any]:
    """GET /_matrix/federation/v1/user/devices/{userId}"""
    return federated_keys.get_user_devices_answer(user_id=_our_user(user_id))


@federation_endpoint(authenticated=True, methods=("POST",))
def query_user_keys(fed: FederationRequest) -> dict[str, Any]:
    """POST /_matrix/federation/v1/user/keys/query"""
    wanted = e2e_keys.check_query_request(_object_body(fed, "device_keys"))
    return federated_keys.get_user_keys_answer(device_keys=_ours(wanted))


@federation_endpoint(authenticated=True, methods=("POST",))
def claim_user_keys(fed: FederationRequest) -> dict[str, Any]:
    """POST /_matrix/federation/v1/user/keys/claim"""
    wanted = e2e_keys.check_claim_request(_object_body(fed, "one_time_keys"))
    ours = get_server_name()
    answer = e2e_keys.do_claim_keys(wanted=[w for w in wanted if w[0].partition(":")[2] == ours])
    return {"one_time_keys": answer["one_time_keys"]}

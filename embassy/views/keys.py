"""Key distribution and server identity.

Spec: https://spec.matrix.org/v1.19/server-server-api/#retrieving-server-keys
(publishing keys, querying keys through another server: the notary endpoints)
and #server-discovery (``/.well-known/matrix/server``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from dagcore import __version__
from dagcore.clock import now_ms
from dagcore.federation.keyring import get_keyring
from dagcore.http.errors import MatrixError, bad_json, invalid_param
from dagcore.http.responses import json_response
from dagcore.protocol import signing
from dagcore.protocol.identifiers import is_valid_server_name, split_server_name
from dagcore.server_keys import build_server_key_response, get_server_name, get_signing_keys
from embassy.http import FederationRequest, federation_endpoint

#: Servers one notary query may ask about: each may cost an outbound fetch.
MAX_NOTARY_SERVERS = 100
#: Key IDs per server in one notary query.
MAX_NOTARY_KEY_IDS = 50


@federation_endpoint(authenticated=False)
def server_keys(fed: FederationRequest) -> dict[str, Any]:
    """GET /_matrix/key/v2/server"""
    return build_server_key_response(now_ms=now_ms())


def _minimum_valid(value: Any, where: str) -> int:
    if value is None:
        return now_ms()  # spec: "If not supplied, the notary server MUST use the current time."
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    raise bad_json(f"{where}: minimum_valid_until_ts must be an integer")


def _notary_answer(criteria: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Each queried server's key answers, with our signature added (spec: "must sign the keys")."""
    keyring = get_keyring()
    our_name, our_keys = get_server_name(), get_signing_keys()
    answers: list[dict[str, Any]] = []
    for server_name, key_criteria in criteria.items():
        for answer in keyring.get_key_responses(server_name, key_criteria):
            for key in our_keys:
                answer = signing.sign_json(answer, server_name=our_name, signing_key=key)
            answers.append(answer)
    return {"server_keys": answers}


@federation_endpoint(authenticated=False, methods=("POST",))
def query_keys(fed: FederationRequest) -> dict[str, Any]:
    """POST /_matrix/key/v2/query"""
    body = fed.body
    if not isinstance(body, dict) or not isinstance(body.get("server_keys"), dict):
        raise bad_json("server_keys: expected an object of server names")
    query: dict[str, Any] = body["server_keys"]
    if len(query) > MAX_NOTARY_SERVERS:
        raise MatrixError(400, "M_LIMIT_EXCEEDED", f"At most {MAX_NOTARY_SERVERS} servers per query")
    criteria: dict[str, dict[str, int]] = {}
    for server_name, key_ids in query.items():
        if not isinstance(key_ids, dict) or len(key_ids) > MAX_NOTARY_KEY_IDS:
            raise bad_json(f"server_keys.{server_name[:255]}: expected an object of at most "
                           f"{MAX_NOTARY_KEY_IDS} key IDs")  # fmt: skip
        if not is_valid_server_name(server_name):
            continue  # no server by that name answers: no keys
        criteria[server_name] = {}
        for key_id, criterion in key_ids.items():
            if not isinstance(criterion, dict):
                raise bad_json(f"server_keys.{server_name}.{key_id[:100]}: expected an object")
            criteria[server_name][key_id] = _minimum_valid(
                criterion.get("minimum_valid_until_ts"), f"server_keys.{server_name}.{key_id[:100]}"
            )
    return _notary_answer(criteria)


@federation_endpoint(authenticated=False)
def query_server_keys(fed: FederationRequest, server_name: str) -> dict[str, Any]:
    """GET /_matrix/key/v2/query/{serverName}"""
    server_name = unquote(server_name)
    if not is_valid_server_name(server_name):
        return {"server_keys": []}
    raw = fed.request.GET.get("minimum_valid_until_ts")
    minimum = now_ms()
    if raw is not None:
        if not raw.isascii() or not raw.isdigit() or len(raw) > 16:
            raise invalid_param("minimum_valid_until_ts must be an integer")
        minimum = int(raw)
    # No key IDs: every key of the server, valid at the asked time.
    answer = _notary_answer({server_name: {}})
    answer["server_keys"] = [a for a in answer["server_keys"] if _valid_until(a) >= minimum] or answer[
        "server_keys"
    ]  # stale answers rather than none (spec: keep serving the last one)
    return answer


def _valid_until(answer: dict[str, Any]) -> int:
    value = answer.get("valid_until_ts")
    return value if isinstance(value, int) else 0


@federation_endpoint(authenticated=False)
def server_version(fed: FederationRequest) -> dict[str, Any]:
    """GET /_matrix/federation/v1/version"""
    return {"server": {"name": "Dagma", "version": __version__}}


def federation_port() -> int | None:
    """The port other servers reach Embassy on: a TLS federation listener's, else any federation one's."""
    listeners = [lst for lst in settings.DAGMA.listeners if "federation" in lst["names"]]
    listeners.sort(key=lambda lst: not lst["tls"])
    return listeners[0]["port"] if listeners else None


@federation_endpoint(authenticated=False)
def well_known_server(fed: FederationRequest) -> HttpResponse | dict[str, Any]:
    """GET /.well-known/matrix/server — delegation to the federation listener."""
    port = federation_port()
    if port is None:
        return json_response({"errcode": "M_NOT_FOUND", "error": "Federation is not served"}, status=404)
    parts = split_server_name(get_server_name())
    host = parts[0] if parts else get_server_name()
    return {"m.server": f"{host}:{port}"}


def unrecognized(request: HttpRequest) -> HttpResponse:
    return json_response({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, status=404)

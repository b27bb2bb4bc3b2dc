"""Key distribution and server identity (spec: server-server API "Retrieving server keys")."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from dagcore import __version__
from dagcore.clock import now_ms
from dagcore.http.responses import json_response
from dagcore.protocol import signing
from dagcore.server_keys import get_server_name, get_signing_keys

#: How long other servers may cache our keys (spec: valid_until_ts; Synapse uses a day).
KEY_VALIDITY_MS = 24 * 3600 * 1000


def server_keys(request: HttpRequest) -> HttpResponse:
    """GET /_matrix/key/v2/server"""
    if request.method != "GET":
        return json_response({"errcode": "M_UNRECOGNIZED", "error": "Method not allowed"}, status=405)
    keys = get_signing_keys()
    body = {
        "server_name": get_server_name(),
        "valid_until_ts": now_ms() + KEY_VALIDITY_MS,
        "verify_keys": {signing.key_id(k): {"key": signing.encode_verify_key_base64(k)} for k in keys},
        "old_verify_keys": {},
    }
    return json_response(signing.sign_json(body, server_name=get_server_name(), signing_key=keys[0]))


def server_version(request: HttpRequest) -> HttpResponse:
    """GET /_matrix/federation/v1/version"""
    return json_response({"server": {"name": "Dagma", "version": __version__}})


def well_known_server(request: HttpRequest) -> HttpResponse:
    """GET /.well-known/matrix/server — delegation to the federation listener, if separate."""
    for listener in settings.DAGMA["listeners"]:
        if "federation" in listener["names"]:
            host = get_server_name().split(":")[0]
            return json_response({"m.server": f"{host}:{listener['port']}"})
    return json_response({"errcode": "M_NOT_FOUND", "error": "Federation is not served"}, status=404)


def unrecognized(request: HttpRequest) -> HttpResponse:
    return json_response({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, status=404)

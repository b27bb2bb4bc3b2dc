"""``/_synapse/admin/v1/register``: shared-secret registration (Synapse's ``register_new_matrix_user``)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from dagcore.actions import shared_secret_registration as actions
from dagcore.http.errors import MatrixError
from dagcore.http.responses import error_response, json_response
from politburo.api.http import json_object_body


@csrf_exempt
def register(request: HttpRequest) -> HttpResponse:
    """GET: a nonce. POST: an account, if the body's HMAC proves the shared secret."""
    try:
        if request.method == "GET":
            return json_response({"nonce": actions.issue_nonce()})
        if request.method != "POST":
            raise MatrixError(405, "M_UNRECOGNIZED", f"Method {request.method} not allowed here")
        body = json_object_body(request)
        return json_response(actions.check_register_with_shared_secret(body))
    except MatrixError as exc:
        return error_response(exc)

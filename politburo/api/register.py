"""``/_synapse/admin/v1/register``: shared-secret registration (Synapse's ``register_new_matrix_user``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from dagcore.actions import shared_secret_registration as actions
from politburo.api.http import api_endpoint, json_object_body


@api_endpoint("GET", "POST", admin=False)
def register(request: HttpRequest) -> dict[str, Any]:
    """GET: a nonce. POST: an account, if the body's HMAC proves the shared secret."""
    if request.method == "GET":
        return {"nonce": actions.issue_nonce()}
    return actions.check_register_with_shared_secret(json_object_body(request))

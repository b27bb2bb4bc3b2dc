"""``/_synapse/admin/v1/register``: shared-secret registration (Synapse's ``register_new_matrix_user``)."""

from __future__ import annotations

from typing import Any

from dagcore.actions import shared_secret_registration as actions
from dagcore.http.endpoint import RequestContext
from politburo.api.http import api_endpoint


@api_endpoint("GET", "POST", admin=False)
def register(ctx: RequestContext) -> dict[str, Any]:
    """GET: a nonce. POST: an account, if the body's HMAC proves the shared secret."""
    if ctx.request.method == "GET":
        return {"nonce": actions.issue_nonce()}
    return actions.check_register_with_shared_secret(ctx.json_object())

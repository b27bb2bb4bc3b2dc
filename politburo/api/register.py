"""``/_synapse/admin/v1/register``: shared-secret registration (Synapse's ``register_new_matrix_user``)."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from dagcore.actions import shared_secret_registration as actions
from politburo.api.base import PublicAPIView, json_body


class Register(PublicAPIView):
    """GET /_synapse/admin/v1/register: a nonce. POST: an account, if the body's HMAC proves the
    shared secret (no access token: the secret is the authentication)."""

    def get(self, request: Request) -> Response:
        return Response({"nonce": actions.issue_nonce()})

    def post(self, request: Request) -> Response:
        return Response(actions.check_register_with_shared_secret(json_body(request)))

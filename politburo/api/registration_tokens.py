"""Synapse's registration tokens admin API (``/_synapse/admin/v1/registration_tokens``)."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from dagcore.actions import admin_users as actions
from politburo.api.base import AdminAPIView, api_actor, bool_param, json_body


class RegistrationTokens(AdminAPIView):
    """GET /_synapse/admin/v1/registration_tokens[?valid=true|false]"""

    def get(self, request: Request) -> Response:
        tokens = actions.list_registration_tokens(valid=bool_param(request, "valid", None))
        return Response({"registration_tokens": [actions.registration_token_json(t) for t in tokens]})


class NewRegistrationToken(AdminAPIView):
    """POST /_synapse/admin/v1/registration_tokens/new"""

    def post(self, request: Request) -> Response:
        row = actions.check_create_registration_token(actor=api_actor(request), body=json_body(request))
        return Response(actions.registration_token_json(row))


class RegistrationToken(AdminAPIView):
    """GET / PUT / DELETE /_synapse/admin/v1/registration_tokens/{token}"""

    def get(self, request: Request, token: str) -> Response:
        return Response(actions.registration_token_json(actions.access_registration_token(token)))

    def put(self, request: Request, token: str) -> Response:
        row = actions.check_update_registration_token(
            actor=api_actor(request), token=token, body=json_body(request)
        )
        return Response(actions.registration_token_json(row))

    def delete(self, request: Request, token: str) -> Response:
        actions.do_delete_registration_token(actor=api_actor(request), token=token)
        return Response({})

"""Synapse-compatible admin API over accounts (served by Politburo only, on localhost).

Thin: :class:`politburo.api.base.AdminAPIView` authenticates the server admin; each view hands
the request to ``dagcore.actions.admin_users``.
"""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from dagcore import __version__
from dagcore.actions import admin_users as actions
from politburo.api.base import AdminAPIView, PublicAPIView, json_body


class ServerVersion(PublicAPIView):
    """GET /_synapse/admin/v1/server_version (no authentication, as in Synapse)."""

    def get(self, request: Request) -> Response:
        return Response({"server_version": f"Dagma {__version__}"})


class Users(AdminAPIView):
    """GET /_synapse/admin/v2/users"""

    def get(self, request: Request) -> Response:
        page = actions.list_users(request.query_params)
        out: dict[str, object] = {"users": page.users, "total": page.total}
        if page.next_token is not None:
            out["next_token"] = page.next_token
        return Response(out)


class UserDetail(AdminAPIView):
    """GET / PUT /_synapse/admin/v2/users/{userId}"""

    def get(self, request: Request, user_id: str) -> Response:
        return Response(actions.user_json(actions.access_user(user_id)))

    def put(self, request: Request, user_id: str) -> Response:
        created, body = actions.check_put_user(admin=self.admin(), user_id=user_id, body=json_body(request))
        return Response(body, status=201 if created else 200)


class ResetPassword(AdminAPIView):
    """POST /_synapse/admin/v1/reset_password/{userId}"""

    def post(self, request: Request, user_id: str) -> Response:
        actions.check_reset_password(user_id=user_id, body=json_body(request))
        return Response({})


class Deactivate(AdminAPIView):
    """POST /_synapse/admin/v1/deactivate/{userId}"""

    def post(self, request: Request, user_id: str) -> Response:
        actions.check_deactivate(admin=self.admin(), user_id=user_id, body=json_body(request))
        return Response({"id_server_unbind_result": "success"})

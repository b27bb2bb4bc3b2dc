"""Synapse admin API about the server itself: background updates, scheduled tasks,
and experimental features (``dagcore.actions.server_admin``)."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from dagcore.actions import admin_users
from dagcore.actions import server_admin as actions
from politburo.api.base import AdminAPIView, json_body


class BackgroundUpdatesStatus(AdminAPIView):
    """GET /_synapse/admin/v1/background_updates/status"""

    def get(self, request: Request) -> Response:
        return Response(actions.background_updates_status())


class BackgroundUpdatesEnabled(AdminAPIView):
    """GET / POST /_synapse/admin/v1/background_updates/enabled"""

    def get(self, request: Request) -> Response:
        return Response({"enabled": actions.background_updates_enabled()})

    def post(self, request: Request) -> Response:
        return Response({"enabled": actions.set_background_updates_enabled(json_body(request))})


class BackgroundUpdatesStartJob(AdminAPIView):
    """POST /_synapse/admin/v1/background_updates/start_job"""

    def post(self, request: Request) -> Response:
        actions.check_start_background_job(json_body(request))
        return Response({})


class ScheduledTasks(AdminAPIView):
    """GET /_synapse/admin/v1/scheduled_tasks"""

    def get(self, request: Request) -> Response:
        return Response({"scheduled_tasks": actions.scheduled_tasks(request.query_params)})


class ExperimentalFeatures(AdminAPIView):
    """GET / PUT /_synapse/admin/v1/experimental_features/{userId}"""

    def get(self, request: Request, user_id: str) -> Response:
        return Response(actions.experimental_features(admin_users.access_user(user_id)))

    def put(self, request: Request, user_id: str) -> Response:
        actions.check_set_experimental_features(admin_users.access_user(user_id), json_body(request))
        return Response({})

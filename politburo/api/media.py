"""Synapse-compatible media admin API (served by Politburo only, on localhost).

Thin: :class:`politburo.api.base.AdminAPIView` authenticates the server admin; each view
parses the path/query and hands them to ``dagcore.actions.media_admin`` (the CLI and the
console call the same actions). Paths and JSON as Synapse's docs/admin_api/media_admin_api.md,
statistics.md and user_admin_api.md ("List/Delete media uploaded by a user").
"""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from dagcore.actions import media_admin as actions
from dagcore.http.errors import MatrixError
from dagcore.server_keys import get_server_name
from politburo.api.base import AdminAPIView, api_actor, bool_param


def _before_ts(request: Request) -> int:
    raw = request.query_params.get("before_ts")
    if raw is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing integer query parameter 'before_ts'")
    if not raw.isdigit() or len(raw) > 15:
        raise MatrixError(400, "M_INVALID_PARAM", "before_ts must be a positive integer (ms)")
    return int(raw)


def _size_gt(request: Request) -> int:
    raw = request.query_params.get("size_gt", "0")
    if not raw.isdigit() or len(raw) > 15:
        raise MatrixError(400, "M_INVALID_PARAM", "size_gt must be a non-negative integer (bytes)")
    return int(raw)


class MediaItem(AdminAPIView):
    """GET / DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}"""

    def get(self, request: Request, server_name: str, media_id: str) -> Response:
        return Response(actions.media_info(server_name=server_name, media_id=media_id))

    def delete(self, request: Request, server_name: str, media_id: str) -> Response:
        result = actions.check_delete_one(
            actor=api_actor(request), server_name=server_name, media_id=media_id
        )
        return Response({"deleted_media": result.deleted_media, "total": len(result.deleted_media)})


class DeleteBefore(AdminAPIView):
    """POST /_synapse/admin/v1/media/delete and (deprecated) /_synapse/admin/v1/media/{serverName}/delete"""

    def post(self, request: Request, server_name: str | None = None) -> Response:
        if server_name is not None and server_name != get_server_name():
            raise MatrixError(400, "M_INVALID_PARAM", "Can only delete local media")
        result = actions.do_purge_media(
            actor=api_actor(request),
            before_ts=_before_ts(request),
            size_gt=_size_gt(request),
            keep_profiles=bool(bool_param(request, "keep_profiles", True)),
            local=True,
            remote=False,
        )
        return Response({"deleted_media": result.deleted_media, "total": len(result.deleted_media)})


class PurgeMediaCache(AdminAPIView):
    """POST /_synapse/admin/v1/purge_media_cache"""

    def post(self, request: Request) -> Response:
        result = actions.do_purge_remote_cache(actor=api_actor(request), before_ts=_before_ts(request))
        return Response({"deleted": result.remote_media})


class Quarantine(AdminAPIView):
    """POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}"""

    def post(self, request: Request, server_name: str, media_id: str) -> Response:
        actions.do_quarantine_one(actor=api_actor(request), server_name=server_name, media_id=media_id)
        return Response({})


class Unquarantine(AdminAPIView):
    """POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}"""

    def post(self, request: Request, server_name: str, media_id: str) -> Response:
        actions.do_unquarantine_one(actor=api_actor(request), server_name=server_name, media_id=media_id)
        return Response({})


class QuarantineRoom(AdminAPIView):
    """POST /_synapse/admin/v1/room/{roomId}/media/quarantine (and the deprecated
    /_synapse/admin/v1/quarantine_media/{roomId})"""

    def post(self, request: Request, room_id: str) -> Response:
        return Response(
            {"num_quarantined": actions.do_quarantine_room_media(actor=api_actor(request), room_id=room_id)}
        )


class QuarantineUser(AdminAPIView):
    """POST /_synapse/admin/v1/user/{userId}/media/quarantine"""

    def post(self, request: Request, user_id: str) -> Response:
        return Response(
            {"num_quarantined": actions.do_quarantine_user_media(actor=api_actor(request), user_id=user_id)}
        )


class Protect(AdminAPIView):
    """POST /_synapse/admin/v1/media/protect/{mediaId}"""

    def post(self, request: Request, media_id: str) -> Response:
        actions.do_protect(actor=api_actor(request), media_id=media_id, protected=True)
        return Response({})


class Unprotect(AdminAPIView):
    """POST /_synapse/admin/v1/media/unprotect/{mediaId}"""

    def post(self, request: Request, media_id: str) -> Response:
        actions.do_protect(actor=api_actor(request), media_id=media_id, protected=False)
        return Response({})


class UsersMediaStatistics(AdminAPIView):
    """GET /_synapse/admin/v1/statistics/users/media"""

    def get(self, request: Request) -> Response:
        return Response(actions.media_usage(request.query_params))

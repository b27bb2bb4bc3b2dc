"""Synapse-compatible admin API over rooms, history purges, event reports and server notices.

Synapse's paths, parameters, JSON and errors (``docs/admin_api/rooms.md``,
``purge_history_api.md``, ``event_reports.md``, ``room_membership.md``, ``fetch_event.md``,
``statistics.md``, ``server_notices.md``, ``media_admin_api.md``). Thin: each view parses,
calls one action in ``dagcore.actions.room_admin`` / ``room_admin_reads`` / ``purge_history``
/ ``admin_jobs``, and shapes the answer.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from dagcore.actions import admin_jobs, purge_history, room_admin, room_admin_reads
from dagcore.http.errors import MatrixError
from dagcore.sync.tokens import RoomToken, parse_pagination_token
from politburo.api.base import AdminAPIView, api_actor, json_body


def _parse_token(token: str) -> tuple[int, int] | int:
    """A ``/messages`` token: a room token's position, or a sync token's events position."""
    parsed = parse_pagination_token(token)
    if isinstance(parsed, RoomToken):
        return (parsed.depth, parsed.stream)
    return parsed.events


def _format_token(key: tuple[int, int]) -> str:
    return str(RoomToken(key[0], key[1]))


def _query(request: Request) -> dict[str, str]:
    return {k: str(v) for k, v in request.query_params.items()}


class Rooms(AdminAPIView):
    """GET /_synapse/admin/v1/rooms"""

    def get(self, request: Request) -> Response:
        return Response(room_admin.list_rooms(_query(request)))


class RoomDetail(AdminAPIView):
    """GET /_synapse/admin/v1/rooms/{roomId}; DELETE (Delete Room API v1, synchronous)"""

    def get(self, request: Request, room_id: str) -> Response:
        return Response(room_admin.get_room_details(room_id))

    def delete(self, request: Request, room_id: str) -> Response:
        parsed = room_admin.parse_delete_room(room_id, request.data)
        return Response(room_admin.do_delete_room(parsed, actor=api_actor(request)))


class RoomDeleteV2(AdminAPIView):
    """DELETE /_synapse/admin/v2/rooms/{roomId} (Delete Room API v2: a job; returns ``delete_id``)"""

    def delete(self, request: Request, room_id: str) -> Response:
        parsed = room_admin.parse_delete_room(room_id, request.data)
        job = admin_jobs.do_start_job(
            kind="delete_room",
            target=room_id,
            params={**parsed.as_json(), "via": "api"},
            actor=api_actor(request),
        )
        return Response({"delete_id": job.job_id})


class RoomDeleteStatus(AdminAPIView):
    """GET /_synapse/admin/v2/rooms/{roomId}/delete_status"""

    def get(self, request: Request, room_id: str) -> Response:
        jobs = admin_jobs.list_jobs(kind="delete_room", target=room_id)
        if not jobs:
            raise MatrixError(404, "M_NOT_FOUND", f"No delete task for room_id '{room_id}' found")
        return Response({"results": [room_admin.delete_status_json(job) for job in jobs]})


class DeleteStatusById(AdminAPIView):
    """GET /_synapse/admin/v2/rooms/delete_status/{deleteId}"""

    def get(self, request: Request, delete_id: str) -> Response:
        try:
            job = admin_jobs.get_job(delete_id)
        except MatrixError:
            job = None
        if job is None or job.kind != "delete_room":
            raise MatrixError(404, "M_NOT_FOUND", f"delete id '{delete_id}' not found")
        return Response(room_admin.delete_status_json(job))


class RoomMembers(AdminAPIView):
    """GET /_synapse/admin/v1/rooms/{roomId}/members"""

    def get(self, request: Request, room_id: str) -> Response:
        return Response(room_admin.get_room_members(room_id))


class RoomState(AdminAPIView):
    """GET /_synapse/admin/v1/rooms/{roomId}/state (``type`` filter)"""

    def get(self, request: Request, room_id: str) -> Response:
        event_type = request.query_params.get("type")
        return Response({"state": room_admin.get_room_state(room_id, event_type=event_type)})


class RoomMessages(AdminAPIView):
    """GET /_synapse/admin/v1/rooms/{roomId}/messages"""

    def get(self, request: Request, room_id: str) -> Response:
        return Response(
            room_admin_reads.get_room_messages(
                room_id, _query(request), parse_token=_parse_token, format_token=_format_token
            )
        )


class RoomContext(AdminAPIView):
    """GET /_synapse/admin/v1/rooms/{roomId}/context/{eventId}"""

    def get(self, request: Request, room_id: str, event_id: str) -> Response:
        return Response(
            room_admin_reads.get_event_context(room_id, event_id, _query(request), format_token=_format_token)
        )


class RoomTimestampToEvent(AdminAPIView):
    """GET /_synapse/admin/v1/rooms/{roomId}/timestamp_to_event"""

    def get(self, request: Request, room_id: str) -> Response:
        return Response(room_admin_reads.get_timestamp_to_event(room_id, _query(request)))


class RoomBlock(AdminAPIView):
    """GET / PUT /_synapse/admin/v1/rooms/{roomId}/block"""

    def get(self, request: Request, room_id: str) -> Response:
        return Response(room_admin.get_block_status(room_id))

    def put(self, request: Request, room_id: str) -> Response:
        body = json_body(request)
        return Response(
            room_admin.check_set_block(room_id=room_id, block=body.get("block"), actor=api_actor(request))
        )


class ForwardExtremities(AdminAPIView):
    """GET / DELETE /_synapse/admin/v1/rooms/{roomIdOrAlias}/forward_extremities"""

    def get(self, request: Request, room_id: str) -> Response:
        return Response(room_admin.get_forward_extremities_json(room_id))

    def delete(self, request: Request, room_id: str) -> Response:
        return Response(
            room_admin.check_delete_forward_extremities(room_id_or_alias=room_id, actor=api_actor(request))
        )


class MakeRoomAdmin(AdminAPIView):
    """POST /_synapse/admin/v1/rooms/{roomIdOrAlias}/make_room_admin"""

    def post(self, request: Request, room_id: str) -> Response:
        body = json_body(request)
        room_admin.check_make_room_admin(
            room_id_or_alias=room_id, user_id=body.get("user_id"), admin_user_id=self.admin().user_id,
            actor=api_actor(request),
        )  # fmt: skip
        return Response({})


class RoomMedia(AdminAPIView):
    """GET /_synapse/admin/v1/room/{roomId}/media"""

    def get(self, request: Request, room_id: str) -> Response:
        return Response(room_admin_reads.get_room_media(room_id))


class JoinRoom(AdminAPIView):
    """POST /_synapse/admin/v1/join/{roomIdOrAlias}"""

    def post(self, request: Request, room_id: str) -> Response:
        body = json_body(request)
        joined = room_admin_reads.check_join_user_to_room(
            room_id_or_alias=room_id, user_id=body.get("user_id"), admin_user_id=self.admin().user_id,
            actor=api_actor(request),
        )  # fmt: skip
        return Response({"room_id": joined})


class PurgeHistory(AdminAPIView):
    """POST /_synapse/admin/v1/purge_history/{roomId}[/{eventId}] (a job; returns ``purge_id``)"""

    def post(self, request: Request, room_id: str, event_id: str | None = None) -> Response:
        body = json_body(request)
        delete_local = body.get("delete_local_events", False)
        if not isinstance(delete_local, bool):
            raise MatrixError(400, "M_INVALID_PARAM", "delete_local_events must be a boolean")
        event_id = event_id or body.get("purge_up_to_event_id")
        before_ts: Any = None
        if event_id is None:
            before_ts = body.get("purge_up_to_ts")
            if before_ts is None:
                raise MatrixError(400, "M_UNKNOWN", "must specify purge_up_to_event_id or purge_up_to_ts")
            if isinstance(before_ts, bool) or not isinstance(before_ts, int):
                raise MatrixError(400, "M_INVALID_PARAM", "purge_up_to_ts must be an int")
        elif not isinstance(event_id, str):
            raise MatrixError(400, "M_INVALID_PARAM", "purge_up_to_event_id must be a string")
        preview = purge_history.get_purge_preview(
            room_id=room_id, before_ts=before_ts, before_event_id=event_id, delete_local_events=delete_local
        )
        job = admin_jobs.do_start_job(
            kind="purge_history", target=room_id,
            params={"boundary": preview.boundary.as_json(), "preview": preview.as_json()["counts"], "via": "api"},
            actor=api_actor(request),
        )  # fmt: skip
        return Response({"purge_id": job.job_id})


class PurgeHistoryStatus(AdminAPIView):
    """GET /_synapse/admin/v1/purge_history_status/{purgeId}"""

    def get(self, request: Request, purge_id: str) -> Response:
        try:
            job = admin_jobs.get_job(purge_id)
        except MatrixError:
            job = None
        if job is None or job.kind != "purge_history":
            raise MatrixError(404, "M_NOT_FOUND", f"purge id '{purge_id}' not found")
        status = {"scheduled": "purging", "active": "purging"}.get(job.status, job.status)
        out: dict[str, Any] = {"status": status}
        if job.status == "failed":
            out["error"] = job.error
        return Response(out)


class EventReports(AdminAPIView):
    """GET /_synapse/admin/v1/event_reports"""

    def get(self, request: Request) -> Response:
        return Response(room_admin_reads.list_event_reports(_query(request)))


class EventReportDetail(AdminAPIView):
    """GET / DELETE /_synapse/admin/v1/event_reports/{reportId}"""

    def get(self, request: Request, report_id: str) -> Response:
        return Response(room_admin_reads.get_event_report(report_id))

    def delete(self, request: Request, report_id: str) -> Response:
        return Response(
            room_admin_reads.check_delete_event_report(report_id=report_id, actor=api_actor(request))
        )


class RoomReports(AdminAPIView):
    """GET /_synapse/admin/v1/room_reports"""

    def get(self, request: Request) -> Response:
        return Response(room_admin_reads.list_room_reports(_query(request)))


class RoomReportDetail(AdminAPIView):
    """GET /_synapse/admin/v1/room_reports/{reportId}"""

    def get(self, request: Request, report_id: str) -> Response:
        return Response(room_admin_reads.get_room_report(report_id))


class FetchEvent(AdminAPIView):
    """GET /_synapse/admin/v1/fetch_event/{eventId}"""

    def get(self, request: Request, event_id: str) -> Response:
        return Response(room_admin_reads.fetch_event(event_id))


class DatabaseRoomStatistics(AdminAPIView):
    """GET /_synapse/admin/v1/statistics/database/rooms"""

    def get(self, request: Request) -> Response:
        return Response(room_admin_reads.get_largest_rooms())


class SendServerNotice(AdminAPIView):
    """POST /_synapse/admin/v1/send_server_notice; PUT /_synapse/admin/v1/send_server_notice/{txnId}"""

    def put(self, request: Request, txn_id: str) -> Response:
        return Response(
            room_admin_reads.check_send_server_notice(
                body=json_body(request), actor=api_actor(request), txn_id=txn_id
            )
        )

    def post(self, request: Request) -> Response:
        return Response(
            room_admin_reads.check_send_server_notice(body=json_body(request), actor=api_actor(request))
        )

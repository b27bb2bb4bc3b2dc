"""Synapse's user admin API (``docs/admin_api/user_admin_api.md``), served by Politburo only.

Thin views over ``dagcore.actions.admin_users``, the same actions the console's user pages
call; each change is audited with the request's actor (``via="api"``).
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from dagcore import __version__
from dagcore.actions import admin_users as actions
from dagcore.http.errors import MatrixError
from politburo.api.base import AdminAPIView, PublicAPIView, api_actor, json_body


class ServerVersion(PublicAPIView):
    """GET /_synapse/admin/v1/server_version (no authentication, as in Synapse)."""

    def get(self, request: Request) -> Response:
        return Response({"server_version": f"Dagma {__version__}"})


def _page(page: actions.UserPage) -> dict[str, Any]:
    out: dict[str, Any] = {"users": page.users, "total": page.total}
    if page.next_token is not None:
        out["next_token"] = page.next_token
    return out


class Users(AdminAPIView):
    """GET /_synapse/admin/v2/users"""

    def get(self, request: Request) -> Response:
        return Response(_page(actions.list_users(request.query_params)))


class UsersV3(AdminAPIView):
    """GET /_synapse/admin/v3/users (``deactivated`` filters both ways)"""

    def get(self, request: Request) -> Response:
        return Response(_page(actions.list_users(request.query_params, v3=True)))


class UserDetail(AdminAPIView):
    """GET / PUT /_synapse/admin/v2/users/{userId}"""

    def get(self, request: Request, user_id: str) -> Response:
        return Response(actions.get_user_json(actions.access_user(user_id)))

    def put(self, request: Request, user_id: str) -> Response:
        created, body = actions.check_put_user(
            actor=api_actor(request), admin=self.admin(), user_id=user_id, body=json_body(request)
        )
        return Response(body, status=201 if created else 200)


class ResetPassword(AdminAPIView):
    """POST /_synapse/admin/v1/reset_password/{userId}"""

    def post(self, request: Request, user_id: str) -> Response:
        actions.check_reset_password(actor=api_actor(request), user_id=user_id, body=json_body(request))
        return Response({})


class Deactivate(AdminAPIView):
    """POST /_synapse/admin/v1/deactivate/{userId}"""

    def post(self, request: Request, user_id: str) -> Response:
        actions.check_deactivate(
            actor=api_actor(request), admin=self.admin(), user_id=user_id, body=json_body(request)
        )
        return Response({"id_server_unbind_result": "success"})


class Devices(AdminAPIView):
    """GET / POST /_synapse/admin/v2/users/{userId}/devices"""

    def get(self, request: Request, user_id: str) -> Response:
        return Response(actions.list_devices_json(user=actions.access_user(user_id)))

    def post(self, request: Request, user_id: str) -> Response:
        actions.check_create_device(
            actor=api_actor(request), user=actions.access_user(user_id), body=json_body(request)
        )
        return Response({})


class Device(AdminAPIView):
    """GET / PUT / DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}"""

    def get(self, request: Request, user_id: str, device_id: str) -> Response:
        return Response(actions.get_device_json(user=actions.access_user(user_id), device_id=device_id))

    def put(self, request: Request, user_id: str, device_id: str) -> Response:
        actions.check_update_device(
            actor=api_actor(request),
            user=actions.access_user(user_id),
            device_id=device_id,
            body=json_body(request),
        )
        return Response({})

    def delete(self, request: Request, user_id: str, device_id: str) -> Response:
        # Synapse answers {} for a device that is not there (idempotent delete).
        actions.check_delete_devices(
            actor=api_actor(request), user=actions.access_user(user_id), device_ids=[device_id]
        )
        return Response({})


class DeleteDevices(AdminAPIView):
    """POST /_synapse/admin/v2/users/{userId}/delete_devices"""

    def post(self, request: Request, user_id: str) -> Response:
        body = json_body(request)
        actions.check_delete_devices(
            actor=api_actor(request), user=actions.access_user(user_id), device_ids=body.get("devices")
        )
        return Response({})


class Whois(AdminAPIView):
    """GET /_synapse/admin/v1/whois/{userId}"""

    def get(self, request: Request, user_id: str) -> Response:
        return Response(actions.whois_json(user=actions.access_user(user_id)))


class JoinedRooms(AdminAPIView):
    """GET /_synapse/admin/v1/users/{userId}/joined_rooms"""

    def get(self, request: Request, user_id: str) -> Response:
        rooms = actions.get_joined_rooms(user_id=user_id)
        return Response({"joined_rooms": rooms, "total": len(rooms)})


class Memberships(AdminAPIView):
    """GET /_synapse/admin/v1/users/{userId}/memberships"""

    def get(self, request: Request, user_id: str) -> Response:
        return Response({"memberships": actions.get_memberships(user_id=user_id)})


class Pushers(AdminAPIView):
    """GET /_synapse/admin/v1/users/{userId}/pushers"""

    def get(self, request: Request, user_id: str) -> Response:
        return Response(actions.pushers_json(user=actions.access_user(user_id)))


class AccountData(AdminAPIView):
    """GET /_synapse/admin/v1/users/{userId}/accountdata"""

    def get(self, request: Request, user_id: str) -> Response:
        return Response(actions.account_data_json(user=actions.access_user(user_id)))


class Media(AdminAPIView):
    """GET /_synapse/admin/v1/users/{userId}/media"""

    def get(self, request: Request, user_id: str) -> Response:
        return Response(
            actions.list_media_json(user=actions.access_user(user_id), query=request.query_params)
        )


class Admin(AdminAPIView):
    """GET / PUT /_synapse/admin/v1/users/{userId}/admin"""

    def get(self, request: Request, user_id: str) -> Response:
        return Response({"admin": actions.access_user(user_id).is_admin})

    def put(self, request: Request, user_id: str) -> Response:
        actions.check_set_admin(
            actor=api_actor(request), admin=self.admin(), user_id=user_id, body=json_body(request)
        )
        return Response({})


class ShadowBan(AdminAPIView):
    """POST / DELETE /_synapse/admin/v1/users/{userId}/shadow_ban"""

    def post(self, request: Request, user_id: str) -> Response:
        user = actions.access_user(user_id)
        actions.do_set_flag(
            actor=api_actor(request), admin=self.admin(), user=user, flag="shadow_banned", value=True
        )
        return Response({})

    def delete(self, request: Request, user_id: str) -> Response:
        user = actions.access_user(user_id)
        actions.do_set_flag(
            actor=api_actor(request), admin=self.admin(), user=user, flag="shadow_banned", value=False
        )
        return Response({})


class OverrideRatelimit(AdminAPIView):
    """GET / POST / DELETE /_synapse/admin/v1/users/{userId}/override_ratelimit"""

    def get(self, request: Request, user_id: str) -> Response:
        return Response(actions.get_ratelimit_json(user=actions.access_user(user_id)))

    def post(self, request: Request, user_id: str) -> Response:
        return Response(
            actions.check_set_ratelimit(actor=api_actor(request), user_id=user_id, body=json_body(request))
        )

    def delete(self, request: Request, user_id: str) -> Response:
        actions.do_delete_ratelimit(actor=api_actor(request), user=actions.access_user(user_id))
        return Response({})


class Suspend(AdminAPIView):
    """PUT /_synapse/admin/v1/suspend/{userId}"""

    def put(self, request: Request, user_id: str) -> Response:
        return Response(
            actions.check_suspend(
                actor=api_actor(request), admin=self.admin(), user_id=user_id, body=json_body(request)
            )
        )


class LoginAs(AdminAPIView):
    """POST /_synapse/admin/v1/users/{userId}/login"""

    def post(self, request: Request, user_id: str) -> Response:
        token = actions.do_login_as(
            actor=api_actor(request),
            admin=self.admin(),
            user=actions.access_user(user_id),
            valid_until_ms=json_body(request).get("valid_until_ms"),
        )
        return Response({"access_token": token})


class Redact(AdminAPIView):
    """POST /_synapse/admin/v1/user/{userId}/redact"""

    def post(self, request: Request, user_id: str) -> Response:
        job = actions.check_start_redact(
            actor=api_actor(request), admin=self.admin(), user_id=user_id, body=json_body(request)
        )
        return Response({"redact_id": job.job_id})


class RedactStatus(AdminAPIView):
    """GET /_synapse/admin/v1/user/redact_status/{redactId}"""

    def get(self, request: Request, redact_id: str) -> Response:
        return Response(actions.redact_status_json(redact_id=redact_id))


class UsernameAvailable(AdminAPIView):
    """GET /_synapse/admin/v1/username_available?username={localpart}"""

    def get(self, request: Request) -> Response:
        return Response(actions.check_username_available(username=request.query_params.get("username")))


class SentInviteCount(AdminAPIView):
    """GET /_synapse/admin/v1/users/{userId}/sent_invite_count?from_ts={ms}"""

    def get(self, request: Request, user_id: str) -> Response:
        count = actions.count_sent_invites(
            user=actions.access_user(user_id), from_ts=request.query_params.get("from_ts")
        )
        return Response({"invite_count": count})


class CumulativeJoinedRoomCount(AdminAPIView):
    """GET /_synapse/admin/v1/users/{userId}/cumulative_joined_room_count?from_ts={ms}"""

    def get(self, request: Request, user_id: str) -> Response:
        count = actions.count_joined_rooms_since(
            user=actions.access_user(user_id), from_ts=request.query_params.get("from_ts")
        )
        return Response({"cumulative_joined_room_count": count})


class UserByExternalId(AdminAPIView):
    """GET /_synapse/admin/v1/auth_providers/{provider}/users/{externalId} and
    GET /_synapse/admin/v1/threepid/{medium}/users/{address}: Dagma has no SSO providers and
    stores no third-party IDs, so no user is ever found (Synapse's 404)."""

    def get(self, request: Request, **_ids: str) -> Response:
        raise MatrixError(404, "M_NOT_FOUND", "User not found")

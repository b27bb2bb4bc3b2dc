"""Typing notices, receipts and read markers (spec: client-server API "Typing Notifications",
"Receipts" and "Fully read markers")."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.actions import accounts as account_actions
from dagcore.actions.receipts import check_set_read_markers, check_set_receipt
from dagcore.actions.typing import check_set_typing
from dagcore.http.errors import MatrixError
from tribune.http import RequestContext, client_route, endpoint, methods


@endpoint(allow_guest=True)
def put_typing(ctx: RequestContext, room_id: str, user_id: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}"""
    if user_id != ctx.user_id:
        raise MatrixError(403, "M_FORBIDDEN", "You can only set your own typing notice")
    body = ctx.json_object()
    typing = body.get("typing")
    if typing is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing typing")
    if not isinstance(typing, bool):
        raise MatrixError(400, "M_BAD_JSON", "typing must be a boolean")
    timeout = body.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0):
        raise MatrixError(400, "M_BAD_JSON", "timeout must be a non-negative integer (milliseconds)")
    if account_actions.is_shadow_banned(ctx.user):
        return {}  # Synapse's shadow ban: the notice "succeeds" and nobody sees it
    check_set_typing(user_id=user_id, room_id=room_id, typing=typing, timeout_ms=timeout)
    return {}


@endpoint(allow_guest=True)
def post_receipt(ctx: RequestContext, room_id: str, receipt_type: str, event_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}"""
    body = ctx.json_object()
    thread_id = body.get("thread_id")
    if "thread_id" in body and (not isinstance(thread_id, str) or not thread_id):
        raise MatrixError(400, "M_INVALID_PARAM", "thread_id field must be a non-empty string")
    check_set_receipt(
        user_id=ctx.user_id,
        room_id=room_id,
        receipt_type=receipt_type,
        event_id=event_id,
        thread_id=thread_id,
    )
    return {}


def _event_id(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not value.startswith("$")):
        raise MatrixError(400, "M_INVALID_PARAM", f"{key} must be an event ID")
    return value


@endpoint(allow_guest=True)
def post_read_markers(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """POST /_matrix/client/v3/rooms/{roomId}/read_markers"""
    body = ctx.json_object()
    check_set_read_markers(
        user_id=ctx.user_id,
        room_id=room_id,
        fully_read=_event_id(body, "m.fully_read"),
        read=_event_id(body, "m.read"),
        read_private=_event_id(body, "m.read.private"),
    )
    return {}


routes: list[URLPattern] = [
    client_route("rooms/<room_id>/typing/<user_id>", methods(PUT=put_typing)),
    client_route("rooms/<room_id>/receipt/<receipt_type>/<event_id>", methods(POST=post_receipt)),
    client_route("rooms/<room_id>/read_markers", methods(POST=post_read_markers)),
]

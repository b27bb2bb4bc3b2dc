"""Reporting content to the server's admins.

Spec: https://spec.matrix.org/v1.19/client-server-api/#reporting-content.
Reports are stored (``ContentReport``) for admins (Politburo). Reporting an
event needs membership and sight of the event; reporting a room or a user only
needs them to exist (404 otherwise).
"""

from __future__ import annotations

from typing import Any

from dagcore.actions.room_access import access_event, access_room_history
from dagcore.http.errors import MatrixError
from dagcore.protocol.identifiers import is_valid_user_id
from dagcore.server_keys import get_server_name
from dagcore.store import accounts as account_store
from dagcore.store import directory as directory_store
from dagcore.store import rooms as room_store

MAX_REASON_LENGTH = 4096


def _reason(value: Any, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise MatrixError(400, "M_MISSING_PARAM", "reason is required")
        return None
    if not isinstance(value, str):
        raise MatrixError(400, "M_INVALID_PARAM", "reason must be a string")
    return value[:MAX_REASON_LENGTH]


def check_report_event(*, reporter: str, room_id: str, event_id: str, reason: Any, score: Any = None) -> None:
    reason = _reason(reason)
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int) or not -100 <= score <= 0
    ):
        raise MatrixError(400, "M_INVALID_PARAM", "score must be an integer between -100 and 0")
    try:
        reader = access_room_history(user_id=reporter, room_id=room_id, allow_departed=False)
    except MatrixError:
        raise MatrixError(
            404, "M_NOT_FOUND", "The event was not found or you are not joined to the room"
        ) from None
    if reader.membership != "join":
        raise MatrixError(404, "M_NOT_FOUND", "The event was not found or you are not joined to the room")
    access_event(reader, event_id)
    directory_store.insert_report(
        room_id=room_id, event_id=event_id, reporter=reporter, reason=reason, score=score
    )


def check_report_room(*, reporter: str, room_id: str, reason: Any) -> None:
    reason = _reason(reason)
    if room_store.get_room(room_id) is None:
        raise MatrixError(404, "M_NOT_FOUND", "The room was not found")
    directory_store.insert_report(
        room_id=room_id, event_id=None, reporter=reporter, reason=reason, score=None
    )


def check_report_user(*, reporter: str, user_id: str, reason: Any) -> None:
    reason = _reason(reason)
    server_name = get_server_name()
    if not is_valid_user_id(user_id) or (
        user_id.split(":", 1)[1] == server_name and account_store.get_user(user_id) is None
    ):
        raise MatrixError(404, "M_NOT_FOUND", "The user was not found")
    directory_store.insert_report(
        room_id=None, event_id=None, reporter=reporter, reason=reason, score=None, reported_user_id=user_id
    )

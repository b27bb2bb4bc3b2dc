"""Builders for in-process room tests: users, rooms and messages through the real actions."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from django.conf import settings

from dagcore.actions.create_room import check_create_room
from dagcore.actions.membership import check_invite_user, check_join_room
from dagcore.actions.room_access import RoomReader, access_room_history
from dagcore.actions.send_event import check_send_event, check_send_state
from dagcore.actions.txns import ClientTxn
from dagcore.models import User
from dagcore.store import accounts as account_store
from tribune.inputs import parse_create_room


def dagma_with(**changes: Any) -> Any:
    """The operator config with some options changed (for ``override_settings(DAGMA=...)``)."""
    return dataclasses.replace(settings.DAGMA, **changes)


def make_user(name: str | None = None, *, admin: bool = False) -> User:
    localpart = name or f"u{secrets.token_hex(4)}"
    return account_store.insert_user(
        user_id=f"@{localpart}:{settings.SERVER_NAME}",
        localpart=localpart,
        password_hash=None,
        is_admin=admin,
    )


def make_room(creator: User, **body: Any) -> str:
    """A room made as ``POST /createRoom`` with this body makes it."""
    return check_create_room(user=creator, request=parse_create_room(body))


def say(user: User, room_id: str, body: str = "hello", **extra: Any) -> str:
    return check_send_event(
        txn=ClientTxn(user_id=user.user_id, device_key="DEV", txn_id=secrets.token_hex(8)),
        room_id=room_id,
        event_type="m.room.message",
        content={"msgtype": "m.text", "body": body, **extra},
    )


def set_state(user: User, room_id: str, event_type: str, content: dict[str, Any], state_key: str = "") -> str:
    return check_send_state(
        user_id=user.user_id, room_id=room_id, event_type=event_type, state_key=state_key, content=content
    )


def join(user: User, room_id: str) -> None:
    check_join_room(user=user, room_id_or_alias=room_id)


def invite(inviter: User, room_id: str, invitee: User) -> None:
    check_invite_user(inviter=inviter.user_id, room_id=room_id, invitee=invitee.user_id)


def reader(user: User | None, room_id: str) -> RoomReader:
    return access_room_history(user_id=user.user_id if user else None, room_id=room_id)


def bodies(events: Any) -> list[str]:
    return [e.event.content.get("body") for e in events if e.event.type == "m.room.message"]

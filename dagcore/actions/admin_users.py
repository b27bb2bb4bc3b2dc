"""Operator actions on accounts, behind Politburo's admin API.

The paths and shapes are Synapse's Admin API (``/_synapse/admin/v2/users``,
``/_synapse/admin/v1/reset_password``, ``/_synapse/admin/v1/deactivate``), so an
operator's scripts and tools written for Synapse keep working. Callers authenticate
with the access token of a server admin (``register_user --admin``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagcore.actions import accounts as account_actions
from dagcore.actions import profile as profile_actions
from dagcore.http.errors import MatrixError
from dagcore.http.params import count_param
from dagcore.models import User
from dagcore.protocol.identifiers import parse_user_id
from dagcore.server_keys import get_server_name
from dagcore.store import accounts as account_store
from dagcore.store import admin as admin_store

DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000


def access_admin(token: str | None) -> User:
    """The server admin the token belongs to: 401 without a valid token, 403 for other users."""
    owner = account_actions.access_token_owner(token)
    if not owner.user.is_admin:
        raise MatrixError(403, "M_FORBIDDEN", "You are not a server admin")
    return owner.user


def user_json(user: User) -> dict[str, Any]:
    return {
        "name": user.user_id,
        "displayname": user.displayname,
        "avatar_url": user.avatar_url,
        "admin": user.is_admin,
        "deactivated": user.deactivated,
        "is_guest": user.is_guest,
        "creation_ts": user.created_ts,
        "user_type": None,
        "locked": False,
        "shadow_banned": False,
        "erased": False,
        "approved": True,
        "threepids": [],
        "external_ids": [],
    }


def _local_localpart(user_id: str) -> str:
    try:
        localpart, server = parse_user_id(user_id)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "Not a user ID") from None
    if server != get_server_name():
        raise MatrixError(400, "M_INVALID_PARAM", "This endpoint can only be used with local users")
    return localpart


def access_user(user_id: str) -> User:
    _local_localpart(user_id)
    user = account_store.get_user(user_id)
    if user is None:
        raise MatrixError(404, "M_NOT_FOUND", "User not found")
    return user


@dataclass(frozen=True)
class UserPage:
    users: list[dict[str, Any]]
    next_token: str | None
    total: int


def _flag(value: str | None, name: str, default: bool) -> bool:
    if value is None:
        return default
    if value not in ("true", "false"):
        raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be true or false")
    return value == "true"


def list_users(query: Mapping[str, str]) -> UserPage:
    """``GET /_synapse/admin/v2/users``: accounts by user ID, paged with ``from``/``limit``."""
    offset = count_param(query.get("from"), "from", default=0, maximum=10**9)
    limit = count_param(query.get("limit"), "limit", default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    name = query.get("name") or query.get("user_id") or None
    if name is not None and len(name) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "name is too long")
    users, total = admin_store.list_users(
        offset=offset,
        limit=limit,
        guests=_flag(query.get("guests"), "guests", True),
        deactivated=_flag(query.get("deactivated"), "deactivated", False),
        admins=None if query.get("admins") is None else _flag(query.get("admins"), "admins", False),
        name=name,
    )
    more = offset + len(users) < total
    return UserPage([user_json(u) for u in users], str(offset + len(users)) if more else None, total)


def _bool(body: Mapping[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise MatrixError(400, "M_INVALID_PARAM", f"{key} must be a boolean")
    return value


def check_put_user(*, admin: User, user_id: str, body: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    """``PUT /_synapse/admin/v2/users/{userId}``: create the account or change it; (created, user)."""
    localpart = _local_localpart(user_id)
    password = body.get("password")
    if password is not None:
        password = account_actions.check_new_password(password)
    displayname = body.get("displayname")
    if displayname is not None:
        displayname = profile_actions.check_profile_value(field="displayname", value=displayname)
    make_admin = _bool(body, "admin")
    deactivate = _bool(body, "deactivated")
    logout_devices = _bool(body, "logout_devices")
    user = account_store.get_user(user_id)
    if user is None:
        account_actions.check_new_localpart(localpart)
        user = account_actions.do_register_user(
            localpart=localpart, password=password, is_admin=bool(make_admin), displayname=displayname
        )
        return True, user_json(user)
    if deactivate is False and user.deactivated:
        raise MatrixError(400, "M_INVALID_PARAM", "Reactivating accounts is not supported")
    if make_admin is not None and make_admin != user.is_admin:
        if user.user_id == admin.user_id and not make_admin:
            raise MatrixError(400, "M_INVALID_PARAM", "You may not demote yourself")
        account_store.set_admin(user, make_admin)
    if password is not None:
        account_actions.do_change_password(
            user=user,
            new_password=password,
            logout_devices=logout_devices is not False,
            keep_device=None,
            keep_token_id=None,
        )
    if displayname is not None and displayname != user.displayname:
        profile_actions.do_set_profile_field(user=user, field="displayname", value=displayname)
    if deactivate and not user.deactivated:
        account_actions.do_deactivate_user(user=user)
    refreshed = account_store.get_user(user_id)
    assert refreshed is not None
    return False, user_json(refreshed)


def check_reset_password(*, user_id: str, body: Mapping[str, Any]) -> None:
    """``POST /_synapse/admin/v1/reset_password/{userId}`` (devices logged out unless told otherwise)."""
    user = access_user(user_id)
    if user.deactivated:
        raise MatrixError(400, "M_INVALID_PARAM", "The account is deactivated")
    password = account_actions.check_new_password(body.get("new_password"))
    logout = _bool(body, "logout_devices")
    account_actions.do_change_password(
        user=user,
        new_password=password,
        logout_devices=logout is not False,
        keep_device=None,
        keep_token_id=None,
    )


def check_deactivate(*, admin: User, user_id: str, body: Mapping[str, Any]) -> None:
    """``POST /_synapse/admin/v1/deactivate/{userId}``."""
    user = access_user(user_id)
    if _bool(body, "erase"):
        raise MatrixError(400, "M_INVALID_PARAM", "erase is not supported yet")
    if user.user_id == admin.user_id:
        raise MatrixError(400, "M_INVALID_PARAM", "You may not deactivate yourself here")
    if not user.deactivated:
        account_actions.do_deactivate_user(user=user)

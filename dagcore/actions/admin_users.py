"""Operator actions on accounts: one set for Politburo's console pages and its admin API.

The API's paths and shapes are Synapse's Admin API (``/_synapse/admin/v2/users`` and its
neighbours), so operators' scripts and tools written for Synapse keep working; the console
calls the same functions. Every change is audited (``record_audit``) with the
:class:`~dagcore.actions.audit.Actor` the caller passes; destructive ones have a preview
(:func:`preview_logout_all`, :func:`preview_deactivate`) counting what they will end, from the
same selection the action uses.

Restrictions an operator sets take effect in Tribune: ``locked`` in :func:`accounts.access_token_owner`
(401 ``M_USER_LOCKED``), ``suspended`` via :func:`accounts.check_not_suspended` (403 ``M_USER_SUSPENDED``
on sends, joins, invites, knocks, profile changes), ``shadow_banned`` in Tribune's send views
(the send "succeeds", nothing is stored), the rate-limit override in ``dagcore.http.endpoint``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagcore.actions import accounts as account_actions
from dagcore.actions import admin_jobs
from dagcore.actions import profile as profile_actions
from dagcore.actions.audit import Actor, record_audit
from dagcore.clock import now_ms
from dagcore.http.errors import MatrixError
from dagcore.http.params import count_param
from dagcore.models import AdminJob, User
from dagcore.models.uia import RegistrationToken
from dagcore.passwords import hash_password
from dagcore.protocol.identifiers import parse_user_id
from dagcore.server_keys import get_server_name
from dagcore.store import accounts as account_store
from dagcore.store import admin as admin_store
from dagcore.store import console as console_store
from dagcore.store import pushers as pusher_store
from dagcore.store import transaction
from dagcore.store import uia as uia_store

DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000
REDACT_JOB = "redact_user_events"  # admin_jobs.JOB_KINDS runs run_redact_user_events


def access_admin(token: str | None) -> User:
    """The server admin the token belongs to: 401 without a valid token, 403 for other users."""
    owner = account_actions.access_token_owner(token)
    if not owner.user.is_admin:
        raise MatrixError(403, "M_FORBIDDEN", "You are not a server admin")
    return owner.user


def user_json(user: User, *, last_seen_ts: int | None = None) -> dict[str, Any]:
    """A user as Synapse's ``GET /_synapse/admin/v2/users/{userId}`` shows it."""
    return {
        "name": user.user_id,
        "displayname": user.displayname,
        "avatar_url": user.avatar_url,
        "admin": user.is_admin,
        "deactivated": user.deactivated,
        "is_guest": user.is_guest,
        "erased": user.erased,
        "shadow_banned": user.shadow_banned,
        "locked": user.locked,
        "suspended": user.suspended,
        "creation_ts": user.created_ts,
        "last_seen_ts": last_seen_ts,
        "appservice_id": None,
        "consent_server_notice_sent": None,
        "consent_version": None,
        "consent_ts": None,
        "user_type": None,
        "approved": True,
        "threepids": [],
        "external_ids": [],
    }


def get_user_json(user: User) -> dict[str, Any]:
    return user_json(user, last_seen_ts=admin_store.last_seen_ts(user))


def _local_localpart(user_id: str) -> str:
    try:
        localpart, server = parse_user_id(user_id)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "Not a user ID") from None
    if server != get_server_name():
        raise MatrixError(400, "M_INVALID_PARAM", "Can only look up local users")
    return localpart


def access_user(user_id: str) -> User:
    """A local account (400 for a remote or malformed ID, 404 when there is none)."""
    _local_localpart(user_id)
    user = account_store.get_user(user_id)
    if user is None:
        raise MatrixError(404, "M_NOT_FOUND", "User not found")
    return user


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class UserPage:
    users: list[dict[str, Any]]
    next_token: str | None
    total: int
    offset: int = 0


def _flag(value: str | None, name: str, default: bool | None) -> bool | None:
    if value is None:
        return default
    if value not in ("true", "false"):
        raise MatrixError(
            400, "M_INVALID_PARAM", f"Query parameter {name!r} must be one of ['true', 'false']"
        )
    return value == "true"


def _text(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name) or None
    if value is not None and len(value) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter {name!r} is too long")
    return value


def list_users(query: Mapping[str, str], *, v3: bool = False, only_locked: bool = False) -> UserPage:
    """``GET /_synapse/admin/v2/users`` (and ``v3``, whose ``deactivated`` is a filter both ways;
    ``only_locked`` for the console's "locked" filter)."""
    offset = count_param(query.get("from"), "from", default=0, maximum=10**9)
    limit = count_param(query.get("limit"), "limit", default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    order_by = query.get("order_by") or "name"
    if order_by not in admin_store.USER_ORDER_COLUMNS:
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown value for order_by: {order_by}")
    direction = query.get("dir") or "f"
    if direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown direction: {direction}")
    deactivated = _flag(query.get("deactivated"), "deactivated", None if v3 else False)
    if not v3 and deactivated:
        deactivated = None  # v2: true *includes* deactivated accounts
    filters = admin_store.UserFilter(
        guests=bool(_flag(query.get("guests"), "guests", True)),
        deactivated=deactivated,
        admins=_flag(query.get("admins"), "admins", None),
        locked=bool(_flag(query.get("locked"), "locked", False)),
        only_locked=only_locked,
        name=_text(query, "name"),
        user_id=_text(query, "user_id"),
        suspended=_flag(query.get("suspended"), "suspended", None),
        shadow_banned=_flag(query.get("shadow_banned"), "shadow_banned", None),
    )
    users, seen, total = admin_store.list_users(
        offset=offset, limit=limit, filters=filters, order_by=order_by, backwards=direction == "b"
    )
    more = offset + len(users) < total
    return UserPage(
        [user_json(u, last_seen_ts=seen.get(u.id)) for u in users],
        str(offset + len(users)) if more else None,
        total,
        offset,
    )


def get_user_counts() -> dict[str, int]:
    return admin_store.count_users_by_flag()


# --------------------------------------------------------------------------- create / modify


def _bool(body: Mapping[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise MatrixError(400, "M_INVALID_PARAM", f"{key} must be a boolean")
    return value


def check_put_user(
    *, actor: Actor, admin: User, user_id: str, body: Mapping[str, Any]
) -> tuple[bool, dict[str, Any]]:
    """``PUT /_synapse/admin/v2/users/{userId}``: create the account or change it; (created, user).

    Everything is validated before anything changes."""
    localpart = _local_localpart(user_id)
    password = body.get("password")
    if password is not None:
        password = account_actions.check_new_password(password)
    # Present and "" (or null): the field is removed, as Synapse does.
    set_displayname, set_avatar = "displayname" in body, "avatar_url" in body
    displayname = profile_actions.check_profile_value(field="displayname", value=body.get("displayname"))
    avatar_url = profile_actions.check_profile_value(field="avatar_url", value=body.get("avatar_url"))
    make_admin = _bool(body, "admin")
    deactivate = _bool(body, "deactivated")
    lock = _bool(body, "locked")
    logout_devices = _bool(body, "logout_devices")
    params = {
        k: body[k] for k in ("displayname", "avatar_url", "admin", "deactivated", "locked") if k in body
    }
    params["password_set"] = password is not None
    user = account_store.get_user(user_id)
    if user is None:
        account_actions.check_new_localpart(localpart)
        with transaction.atomic():
            user = account_actions.do_register_user(
                localpart=localpart,
                password=password,
                is_admin=bool(make_admin),
                displayname=displayname or None,
            )
            if avatar_url:
                profile_actions.do_set_profile_field(user=user, field="avatar_url", value=avatar_url)
            if lock:
                admin_store.set_user_flags(user, locked=True)
            record_audit(actor=actor, action="user_create", target=user.user_id, params=params)
        return True, get_user_json(user)
    if make_admin is False and user.user_id == admin.user_id and user.is_admin:
        raise MatrixError(400, "M_INVALID_PARAM", "You may not demote yourself.")
    if deactivate and user.user_id == admin.user_id:
        raise MatrixError(400, "M_INVALID_PARAM", "You may not deactivate yourself here")
    if deactivate is False and user.deactivated and password is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Must provide a password to re-activate an account.")
    if make_admin is not None and make_admin != user.is_admin:
        admin_store.set_user_flags(user, is_admin=make_admin)
    if lock is not None and lock != user.locked:
        admin_store.set_user_flags(user, locked=lock)
    if deactivate is False and user.deactivated:
        admin_store.set_reactivated(user, hash_password(password or ""))
    elif password is not None and not user.deactivated:
        account_actions.do_change_password(
            user=user, new_password=password, logout_devices=logout_devices is not False, keep_device=None,
            keep_token_id=None,
        )  # fmt: skip
    if set_displayname and displayname != user.displayname and not user.deactivated:
        profile_actions.do_set_profile_field(user=user, field="displayname", value=displayname)
    if set_avatar and avatar_url != user.avatar_url and not user.deactivated:
        profile_actions.do_set_profile_field(user=user, field="avatar_url", value=avatar_url)
    if deactivate and not user.deactivated:
        account_actions.do_deactivate_user(user=user)
    record_audit(actor=actor, action="user_modify", target=user.user_id, params=params)
    refreshed = account_store.get_user(user_id)
    assert refreshed is not None
    return False, get_user_json(refreshed)


def check_create_user(
    *, actor: Actor, localpart: str, password: str, displayname: str | None, admin: bool
) -> User:
    """The console's "create user" form (the API creates through :func:`check_put_user`)."""
    localpart = account_actions.check_new_localpart(localpart)
    password = account_actions.check_new_password(password)
    if displayname:
        displayname = profile_actions.check_profile_value(field="displayname", value=displayname)
    user = account_actions.do_register_user(
        localpart=localpart, password=password, is_admin=admin, displayname=displayname or None
    )
    record_audit(actor=actor, action="user_create", target=user.user_id, params={"admin": admin})
    return user


# --------------------------------------------------------------------------- password, logout, deactivation


def preview_logout_all(*, user: User) -> dict[str, int]:
    """What logging the user out everywhere ends (counted as the action selects)."""
    return admin_store.count_user_sessions(user)


def check_reset_password(*, actor: Actor, user_id: str, body: Mapping[str, Any]) -> dict[str, int]:
    """``POST /_synapse/admin/v1/reset_password/{userId}`` (devices logged out unless told otherwise)."""
    user = access_user(user_id)
    if user.deactivated:
        raise MatrixError(400, "M_INVALID_PARAM", "The account is deactivated")
    password = account_actions.check_new_password(body.get("new_password"))
    logout = _bool(body, "logout_devices") is not False
    counts = preview_logout_all(user=user) if logout else {}
    account_actions.do_change_password(
        user=user, new_password=password, logout_devices=logout, keep_device=None, keep_token_id=None
    )
    record_audit(actor=actor, action="user_reset_password", target=user.user_id,
                 params={"logout_devices": logout}, counts=counts)  # fmt: skip
    return counts


def do_logout_everywhere(*, actor: Actor, user: User) -> dict[str, int]:
    counts = preview_logout_all(user=user)
    account_actions.do_logout_all(user=user)
    counts["console_sessions"] = console_store.delete_console_sessions_of(user)
    record_audit(actor=actor, action="user_logout_all", target=user.user_id, counts=counts)
    return counts


def preview_deactivate(*, user: User) -> dict[str, int]:
    """What deactivation ends and leaves: devices, tokens, rooms, pushers."""
    return {
        **admin_store.count_user_sessions(user),
        "rooms": len(admin_store.get_memberships(user.user_id)),
        "joined_rooms": len(admin_store.get_joined_rooms(user.user_id)),
        "pushers": len(pusher_store.get_pushers(user.user_id)),
    }


def do_deactivate(*, actor: Actor, admin: User, user: User, erase: bool) -> dict[str, int]:
    if user.user_id == admin.user_id:
        raise MatrixError(400, "M_INVALID_PARAM", "You may not deactivate yourself here")
    counts = preview_deactivate(user=user)
    if not user.deactivated:
        with transaction.atomic():
            for pusher in pusher_store.get_pushers(user.user_id):
                pusher_store.delete_pusher(user_id=user.user_id, app_id=pusher.app_id, pushkey=pusher.pushkey)
            console_store.delete_console_sessions_of(user)
            account_actions.do_deactivate_user(user=user)
    if erase and not user.erased:
        admin_store.set_user_flags(user, erased=True)
    record_audit(
        actor=actor, action="user_deactivate", target=user.user_id, params={"erase": erase}, counts=counts
    )
    return counts


def check_deactivate(*, actor: Actor, admin: User, user_id: str, body: Mapping[str, Any]) -> None:
    """``POST /_synapse/admin/v1/deactivate/{userId}`` (``erase``: also marked GDPR-erased)."""
    user = access_user(user_id)
    erase = _bool(body, "erase")
    do_deactivate(actor=actor, admin=admin, user=user, erase=bool(erase))


# --------------------------------------------------------------------------- flags


def do_set_admin(*, actor: Actor, admin: User, user: User, make_admin: bool) -> None:
    if not make_admin and user.user_id == admin.user_id:
        raise MatrixError(400, "M_INVALID_PARAM", "You may not demote yourself.")
    if user.is_admin != make_admin:
        admin_store.set_user_flags(user, is_admin=make_admin)
    record_audit(actor=actor, action="user_admin" if make_admin else "user_unadmin", target=user.user_id)


def check_set_admin(*, actor: Actor, admin: User, user_id: str, body: Mapping[str, Any]) -> None:
    """``PUT /_synapse/admin/v1/users/{userId}/admin``."""
    user = access_user(user_id)
    value = body.get("admin")
    if not isinstance(value, bool):
        raise MatrixError(
            400,
            "M_MISSING_PARAM",
            "Missing 'admin' key in body" if value is None else "admin must be a boolean",
        )
    do_set_admin(actor=actor, admin=admin, user=user, make_admin=value)


def do_set_flag(*, actor: Actor, admin: User, user: User, flag: str, value: bool) -> None:
    """``suspended``, ``locked`` or ``shadow_banned`` (a locked user's console sessions end)."""
    assert flag in ("suspended", "locked", "shadow_banned"), flag
    if value and user.user_id == admin.user_id:
        raise MatrixError(400, "M_INVALID_PARAM", f"You may not set {flag} on yourself.")
    if getattr(user, flag) != value:
        admin_store.set_user_flags(user, **{flag: value})
    if flag == "locked" and value:
        console_store.delete_console_sessions_of(user)
    names = {"suspended": "suspend", "locked": "lock", "shadow_banned": "shadow_ban"}
    record_audit(actor=actor, action=("user_" if value else "user_un") + names[flag], target=user.user_id)


def check_suspend(*, actor: Actor, admin: User, user_id: str, body: Mapping[str, Any]) -> dict[str, str]:
    """``PUT /_synapse/admin/v1/suspend/{userId}`` (``{"suspend": bool}``)."""
    user = access_user(user_id)
    value = body.get("suspend")
    if not isinstance(value, bool):
        raise MatrixError(400, "M_BAD_JSON", "'suspend' parameter value must be a boolean")
    do_set_flag(actor=actor, admin=admin, user=user, flag="suspended", value=value)
    return {f"user_{'suspended' if value else 'unsuspended'}": user.user_id}


def get_ratelimit_json(*, user: User) -> dict[str, int]:
    row = console_store.get_ratelimit_override(user)
    if row is None:
        return {}
    return {"messages_per_second": row.messages_per_second, "burst_count": row.burst_count}


def _non_negative(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 2**31 - 1:
        raise MatrixError(400, "M_INVALID_PARAM", f"{key!r} parameter must be a positive integer.")
    return value


def check_set_ratelimit(*, actor: Actor, user_id: str, body: Mapping[str, Any]) -> dict[str, int]:
    """``POST /_synapse/admin/v1/users/{userId}/override_ratelimit``."""
    user = access_user(user_id)
    mps, burst = _non_negative(body, "messages_per_second"), _non_negative(body, "burst_count")
    console_store.set_ratelimit_override(user=user, messages_per_second=mps, burst_count=burst)
    record_audit(actor=actor, action="user_ratelimit_override", target=user.user_id,
                 params={"messages_per_second": mps, "burst_count": burst})  # fmt: skip
    return {"messages_per_second": mps, "burst_count": burst}


def do_delete_ratelimit(*, actor: Actor, user: User) -> None:
    removed = console_store.delete_ratelimit_override(user)
    record_audit(
        actor=actor, action="user_ratelimit_default", target=user.user_id, counts={"removed": removed}
    )


def get_message_ratelimit(user: User) -> tuple[float, float] | None:
    """The user's own message rate limit (per second, burst), if an operator set one."""
    row = console_store.get_ratelimit_override(user)
    return None if row is None else (float(row.messages_per_second), float(row.burst_count))


# --------------------------------------------------------------------------- devices and sessions


def device_json(user: User, device: Any) -> dict[str, Any]:
    out = {
        "device_id": device.device_id,
        "last_seen_ip": device.last_seen_ip,
        "last_seen_user_agent": device.last_seen_user_agent,
        "last_seen_ts": device.last_seen_ts,
        "user_id": user.user_id,
        "dehydrated": False,
    }
    if device.display_name is not None:
        out["display_name"] = device.display_name
    return out


def list_devices_json(*, user: User) -> dict[str, Any]:
    devices = [device_json(user, d) for d in account_actions.get_devices(user=user)]
    return {"devices": devices, "total": len(devices)}


def get_device_json(*, user: User, device_id: str) -> dict[str, Any]:
    return device_json(user, account_actions.access_device(user=user, device_id=device_id))


def check_update_device(*, actor: Actor, user: User, device_id: str, body: Mapping[str, Any]) -> None:
    account_actions.check_update_device(user=user, device_id=device_id, display_name=body.get("display_name"))
    record_audit(actor=actor, action="device_update", target=f"{user.user_id} {device_id}")


def check_create_device(*, actor: Actor, user: User, body: Mapping[str, Any]) -> None:
    device_id = body.get("device_id")
    if not isinstance(device_id, str) or not device_id or len(device_id) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "device_id must be a non-empty string")
    account_store.upsert_device(user, device_id, None)
    record_audit(actor=actor, action="device_create", target=f"{user.user_id} {device_id}")


def check_delete_devices(*, actor: Actor, user: User, device_ids: Any) -> int:
    if (
        not isinstance(device_ids, list)
        or not all(isinstance(d, str) for d in device_ids)
        or len(device_ids) > 1000
    ):
        raise MatrixError(400, "M_INVALID_PARAM", "devices must be a list of device IDs")
    deleted = account_actions.do_delete_devices(user=user, device_ids=device_ids)
    record_audit(actor=actor, action="device_delete", target=user.user_id, params={"devices": device_ids},
                 counts={"devices": deleted})  # fmt: skip
    return deleted


def whois_json(*, user: User) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/whois/{userId}``: per device, its last connection."""
    devices: dict[str, Any] = {}
    for d in account_actions.get_devices(user=user):
        connections = []
        if d.last_seen_ts is not None:
            connections.append(
                {"ip": d.last_seen_ip, "last_seen": d.last_seen_ts, "user_agent": d.last_seen_user_agent}
            )
        devices[d.device_id] = {"sessions": [{"connections": connections}]}
    return {"user_id": user.user_id, "devices": devices}


def do_login_as(*, actor: Actor, admin: User, user: User, valid_until_ms: Any) -> str:
    """``POST /_synapse/admin/v1/users/{userId}/login``: a token without a device."""
    if user.user_id == admin.user_id:
        raise MatrixError(400, "M_UNKNOWN", "Cannot use admin API to login as self")
    if user.deactivated:
        raise MatrixError(400, "M_INVALID_PARAM", "The account is deactivated")
    if valid_until_ms is not None and (
        not isinstance(valid_until_ms, int) or isinstance(valid_until_ms, bool) or valid_until_ms <= now_ms()
    ):
        raise MatrixError(
            400, "M_INVALID_PARAM", "'valid_until_ms' parameter must be a future timestamp in ms"
        )
    token = account_store.create_access_token(user, None, valid_until_ms=valid_until_ms)
    record_audit(
        actor=actor, action="user_login_as", target=user.user_id, params={"valid_until_ms": valid_until_ms}
    )
    return token


# --------------------------------------------------------------------------- what the user has


def get_memberships(*, user_id: str) -> dict[str, str]:
    """Local and remote users alike (what this server knows)."""
    try:
        parse_user_id(user_id)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "Not a user ID") from None
    return admin_store.get_memberships(user_id)


def get_joined_rooms(*, user_id: str) -> list[str]:
    try:
        parse_user_id(user_id)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "Not a user ID") from None
    return admin_store.get_joined_rooms(user_id)


def pushers_json(*, user: User) -> dict[str, Any]:
    pushers = [
        {
            "app_display_name": p.app_display_name,
            "app_id": p.app_id,
            "data": json.loads(p.data) if p.data else {},
            "device_display_name": p.device_display_name,
            "kind": p.kind,
            "lang": p.lang,
            "profile_tag": p.profile_tag or "",
            "pushkey": p.pushkey,
        }
        for p in pusher_store.get_pushers(user.user_id)
    ]
    return {"pushers": pushers, "total": len(pushers)}


def account_data_json(*, user: User) -> dict[str, Any]:
    global_: dict[str, Any] = {}
    rooms: dict[str, dict[str, Any]] = {}
    for room_id, data_type, content in admin_store.get_account_data(user.user_id):
        value = json.loads(content)
        if room_id:
            rooms.setdefault(room_id, {})[data_type] = value
        else:
            global_[data_type] = value
    return {"account_data": {"global": global_, "rooms": rooms}}


def list_media_json(*, user: User, query: Mapping[str, str]) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/users/{userId}/media`` (newest first unless ordered otherwise)."""
    offset = count_param(query.get("from"), "from", default=0, maximum=10**9)
    limit = count_param(query.get("limit"), "limit", default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    order_by, direction = query.get("order_by"), query.get("dir")
    if order_by is not None and order_by not in admin_store.MEDIA_ORDER_COLUMNS:
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown value for order_by: {order_by}")
    if direction is not None and direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown direction: {direction}")
    backwards = direction == "b" if (order_by or direction) else True
    rows, total = admin_store.list_user_media(
        user_id=user.user_id,
        offset=offset,
        limit=limit,
        order_by=order_by or "created_ts",
        backwards=backwards,
    )
    media = [
        {
            "created_ts": m.created_ts,
            "last_access_ts": m.last_access_ts,
            "media_id": m.media_id,
            "media_length": m.size,
            "media_type": m.content_type,
            "quarantined_by": m.quarantined_by,
            "safe_from_quarantine": False,
            "upload_name": m.upload_name,
        }
        for m in rows
    ]
    out: dict[str, Any] = {"media": media, "total": total}
    if offset + len(media) < total:
        out["next_token"] = offset + len(media)
    return out


def _from_ts(value: str | None) -> int:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 16:
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'from_ts' must be a timestamp in ms")
    return int(value)


def _membership(event_json: str) -> str | None:
    content = json.loads(event_json).get("content")
    return content.get("membership") if isinstance(content, dict) else None


def count_sent_invites(*, user: User, from_ts: str | None) -> int:
    """``GET /_synapse/admin/v1/users/{userId}/sent_invite_count``: invites sent since ``from_ts``."""
    rows = admin_store.get_member_events_since(
        user_id=user.user_id, since_ts=_from_ts(from_ts), as_sender=True
    )
    return sum(
        1 for _room, state_key, js in rows if state_key != user.user_id and _membership(js) == "invite"
    )


def count_joined_rooms_since(*, user: User, from_ts: str | None) -> int:
    """``GET /_synapse/admin/v1/users/{userId}/cumulative_joined_room_count``: rooms joined since
    ``from_ts``, even if left since."""
    rows = admin_store.get_member_events_since(
        user_id=user.user_id, since_ts=_from_ts(from_ts), as_sender=False
    )
    return len({room for room, _key, js in rows if _membership(js) == "join"})


def check_username_available(*, username: str | None) -> dict[str, bool]:
    """``GET /_synapse/admin/v1/username_available`` (works with registration closed)."""
    if not username:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing string query parameter 'username'")
    account_actions.check_new_localpart(username)
    return {"available": True}


# --------------------------------------------------------------------------- redacting a user's events


def check_start_redact(*, actor: Actor, admin: User, user_id: str, body: Mapping[str, Any]) -> AdminJob:
    """``POST /_synapse/admin/v1/user/{userId}/redact``: an admin job (its ID is the redact ID)."""
    try:
        parse_user_id(user_id)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "Not a user ID") from None
    rooms = body.get("rooms")
    if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
        raise MatrixError(400, "M_INVALID_PARAM", "rooms must be a list of room IDs")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 1000):
        raise MatrixError(400, "M_INVALID_PARAM", "reason must be a string")
    limit = body.get("limit", 1000)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100_000:
        raise MatrixError(400, "M_INVALID_PARAM", "limit must be a positive integer")
    use_admin = _bool(body, "use_admin")
    after_ts, before_ts = body.get("after_ts"), body.get("before_ts")
    for name, value in (("after_ts", after_ts), ("before_ts", before_ts)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be a timestamp in ms")
    local = parse_user_id(user_id)[1] == get_server_name()
    if not rooms:
        rooms = (
            admin_store.get_joined_rooms(user_id) if not local else list(admin_store.get_memberships(user_id))
        )
    params = {
        "rooms": rooms, "reason": reason, "limit": limit, "after_ts": after_ts, "before_ts": before_ts,
        "sender": user_id if local and not use_admin else admin.user_id,
    }  # fmt: skip
    job = admin_jobs.do_start_job(kind=REDACT_JOB, target=user_id, params=params, actor=actor)
    record_audit(actor=actor, action="user_redact", target=user_id, params={**params, "job": job.job_id})
    return job


def run_redact_user_events(*, job: AdminJob, progress: Any) -> dict[str, Any]:
    """The redact job: each selected event redacted by the user (or the admin), failures kept."""
    from dagcore.actions.persist_event import send_local_event

    p = job.params
    targets = admin_store.find_user_events_to_redact(
        user_id=job.target, room_ids=list(p["rooms"]), after_ts=p.get("after_ts"), before_ts=p.get("before_ts"),
        limit_per_room=int(p["limit"]),
    )  # fmt: skip
    failed: dict[str, str] = {}
    done = 0
    content = {"reason": p["reason"]} if p.get("reason") else {}
    for room_id, event_id in targets:
        try:
            send_local_event(
                room_id=room_id, sender=p["sender"], event_type="m.room.redaction",
                content={**content, "redacts": event_id}, redacts=event_id,
            )  # fmt: skip
            done += 1
        except MatrixError as exc:
            failed[event_id] = exc.error
        progress({"redacted": done, "failed": len(failed), "total": len(targets)})
    return {"redacted": done, "failed_redactions": failed, "total": len(targets)}


def redact_status_json(*, redact_id: str) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/user/redact_status/{redactId}``."""
    job = admin_jobs.get_job(redact_id)
    if job.kind != REDACT_JOB:
        raise MatrixError(404, "M_NOT_FOUND", f"redact id '{redact_id}' not found")
    status = {"scheduled": "scheduled", "active": "active", "complete": "complete", "failed": "failed"}.get(
        job.status, job.status
    )
    return {"status": status, "failed_redactions": dict(job.result.get("failed_redactions", {}))}


# --------------------------------------------------------------------------- registration tokens

_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")


def registration_token_json(token: RegistrationToken) -> dict[str, Any]:
    return {
        "token": token.token,
        "uses_allowed": token.uses_allowed,
        "pending": token.pending,
        "completed": token.completed,
        "expiry_time": token.expiry_time,
    }


def list_registration_tokens(*, valid: bool | None) -> list[RegistrationToken]:
    return admin_store.list_registration_tokens(valid=valid, now=now_ms())


def access_registration_token(token: str) -> RegistrationToken:
    row = uia_store.get_registration_token(token)
    if row is None:
        raise MatrixError(404, "M_NOT_FOUND", f"No such registration token: {token}")
    return row


def _uses_allowed(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 2**31 - 1:
        raise MatrixError(400, "M_INVALID_PARAM", "uses_allowed must be a non-negative integer or null")
    return value


def _expiry_time(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < now_ms() or value > 2**53:
        raise MatrixError(400, "M_INVALID_PARAM", "expiry_time must not be in the past")
    return value


def check_create_registration_token(*, actor: Actor, body: Mapping[str, Any]) -> RegistrationToken:
    """``POST /_synapse/admin/v1/registration_tokens/new``."""
    token = body.get("token")
    length = body.get("length", 16)
    if token is None:
        if not isinstance(length, int) or isinstance(length, bool) or not 0 < length <= 64:
            raise MatrixError(400, "M_INVALID_PARAM", "length must be an integer > 0 and <= 64")
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"
        token = "".join(secrets.choice(alphabet) for _ in range(length))
    elif not isinstance(token, str) or not _TOKEN_RE.match(token):
        raise MatrixError(
            400,
            "M_INVALID_PARAM",
            "token must consist only of characters matched by the regex [A-Za-z0-9._~-]",
        )
    uses, expiry = _uses_allowed(body.get("uses_allowed")), _expiry_time(body.get("expiry_time"))
    row = admin_store.insert_registration_token(token=token, uses_allowed=uses, expiry_time=expiry)
    if row is None:
        raise MatrixError(400, "M_INVALID_PARAM", f"Token already in use: {token}")
    record_audit(actor=actor, action="regtoken_create", target=token[:8] + "…",
                 params={"uses_allowed": uses, "expiry_time": expiry})  # fmt: skip
    return row


def check_update_registration_token(
    *, actor: Actor, token: str, body: Mapping[str, Any]
) -> RegistrationToken:
    """``PUT /_synapse/admin/v1/registration_tokens/{token}`` (fields left out stay)."""
    row = access_registration_token(token)
    fields: dict[str, Any] = {}
    if "uses_allowed" in body:
        fields["uses_allowed"] = _uses_allowed(body["uses_allowed"])
    if "expiry_time" in body:
        fields["expiry_time"] = _expiry_time(body["expiry_time"])
    admin_store.update_registration_token(row, **fields)
    record_audit(actor=actor, action="regtoken_update", target=token[:8] + "…", params=fields)
    return row


def do_delete_registration_token(*, actor: Actor, token: str) -> None:
    """``DELETE /_synapse/admin/v1/registration_tokens/{token}``."""
    if not uia_store.delete_registration_token(token):
        raise MatrixError(404, "M_NOT_FOUND", f"No such registration token: {token}")
    record_audit(actor=actor, action="regtoken_delete", target=token[:8] + "…")

"""Accounts: registration, login sessions (devices + tokens), passwords, deactivation.

Spec: client-server API "Client Authentication" and "Account registration and
management" (https://spec.matrix.org/v1.19/client-server-api/#client-authentication),
"Device Management" (https://spec.matrix.org/v1.19/client-server-api/#device-management).
Validation failures raise :class:`MatrixError` with the spec's error code; they
happen before anything is written.
"""

from __future__ import annotations

import logging
import secrets
import string
from dataclasses import dataclass

from django.conf import settings

from dagcore.actions.device_lists import mark_device_list_changed
from dagcore.actions.persist_event import send_local_event
from dagcore.clock import duration_ms, now_ms
from dagcore.http.errors import MatrixError
from dagcore.models import Device, User
from dagcore.passwords import check_password, hash_password, needs_rehash
from dagcore.protocol.identifiers import MAX_IDENTIFIER_BYTES, is_valid_new_localpart, parse_user_id
from dagcore.server_keys import get_server_name
from dagcore.store import accounts as account_store
from dagcore.store import e2e_keys as key_store
from dagcore.store import rooms as room_store
from dagcore.store import to_device as to_device_store
from dagcore.store import transaction
from dagcore.store.transaction import IntegrityError

logger = logging.getLogger(__name__)

#: Longest password accepted: argon2 copes with any length, but a megabyte of
#: "password" is only a way to burn our CPU.
MAX_PASSWORD_LENGTH = 512
#: Longest device display name (the spec sets none; other servers use 100).
MAX_DEVICE_DISPLAY_NAME = 100
#: Longest client-chosen device ID.
MAX_DEVICE_ID_LENGTH = 255
DEVICE_ID_LENGTH = 10


def parse_duration_ms(value: str | int) -> int:
    """Synapse-style durations: ``5m``, ``1h``, ``7d``, ``500ms``, or a number of milliseconds."""
    ms = duration_ms(value)
    if ms is None:
        raise ValueError(f"not a duration: {value!r} (expected e.g. 5m, 1h, 7d)")
    return ms


def access_token_lifetime_ms() -> int | None:
    """Lifetime of refreshable access tokens (config ``access_token_lifetime``), or None."""
    raw = settings.DAGMA.access_token_lifetime
    return parse_duration_ms(raw) if raw else None


def user_id_for(localpart: str) -> str:
    return f"@{localpart}:{get_server_name()}"


def _device_list_changed(user_id: str, device_ids: list[str], *, deleted: bool = False) -> None:
    """Tell the user's E2EE peers (``device_lists.changed`` in their /sync, other servers by
    ``m.device_list_update``) to re-query the user's devices. It advances a stream: call it
    last in the transaction."""

    mark_device_list_changed(user_id=user_id, device_ids=device_ids, deleted=deleted)


# --------------------------------------------------------------------------- registration


def check_new_localpart(localpart: object) -> str:
    """The localpart, if a new account may take it; else M_INVALID_USERNAME / M_USER_IN_USE.

    Spec (appendices, "User Identifiers"): new localparts use only ``a-z 0-9 . _ = - / +``.
    Upper case is refused, never folded: the client must not be surprised by the
    user ID it gets.
    """
    if not isinstance(localpart, str):
        raise MatrixError(400, "M_INVALID_USERNAME", "The username must be a string")
    if not localpart:
        raise MatrixError(400, "M_INVALID_USERNAME", "The username must not be empty")
    if not is_valid_new_localpart(localpart):
        raise MatrixError(
            400, "M_INVALID_USERNAME", "User ID can only contain characters a-z, 0-9, or '=_-./+'"
        )
    if not is_valid_new_localpart(localpart, server_name=get_server_name()):
        raise MatrixError(
            400, "M_INVALID_USERNAME", f"User ID may not be longer than {MAX_IDENTIFIER_BYTES} bytes"
        )
    if account_store.user_exists(localpart):
        raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
    return localpart


def check_new_password(password: object) -> str:
    if not isinstance(password, str):
        raise MatrixError(400, "M_INVALID_PARAM", "The password must be a string")
    if not password:
        raise MatrixError(400, "M_WEAK_PASSWORD", "The password must not be empty")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise MatrixError(
            400, "M_INVALID_PARAM", f"The password may not be longer than {MAX_PASSWORD_LENGTH} characters"
        )
    return password


def access_token_owner(token: str | None, *, allow_locked: bool = False) -> account_store.TokenOwner:
    """Who an access token belongs to: 401 ``M_MISSING_TOKEN`` without one, 401 ``M_UNKNOWN_TOKEN``
    for an unknown, expired (soft logout: refresh instead) or deactivated account's token,
    401 ``M_USER_LOCKED`` for a locked account's (unless ``allow_locked``: logging out).

    One indexed query, no cache: a revoked token fails at once.
    """
    if not token:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token")
    owner = account_store.get_token_owner(token)
    if owner is None:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown access token", soft_logout=False)
    if owner.valid_until_ms is not None and owner.valid_until_ms < now_ms():
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access token has expired", soft_logout=True)
    if owner.user.deactivated:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "This account has been deactivated", soft_logout=False)
    if owner.user.locked and not allow_locked:
        # Spec "Account locking" (v1.12, MSC3939): the client keeps its token and tells the
        # user; only /logout and /logout/all still take it.
        raise MatrixError(401, "M_USER_LOCKED", "User account has been locked", soft_logout=True)
    return owner


def count_accounts() -> int:
    """How many accounts exist (the quick start's hint to create the first one)."""
    return account_store.count_users()


def generate_localpart() -> str:
    """A fresh random localpart, for registrations without a username (and guests)."""
    for _ in range(20):
        candidate = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(12))
        if not account_store.user_exists(candidate):
            return candidate
    raise MatrixError(500, "M_UNKNOWN", "Could not pick a free user ID")


def do_register_user(
    *, localpart: str, password: str | None, is_admin: bool = False, is_guest: bool = False,
    displayname: str | None = None,
) -> User:  # fmt: skip
    """Create the account (input already valid). A race for the same localpart gives M_USER_IN_USE."""
    password_hash = hash_password(password) if password is not None else None
    try:
        with transaction.atomic():
            return account_store.insert_user(
                user_id=user_id_for(localpart),
                localpart=localpart,
                password_hash=password_hash,
                is_admin=is_admin,
                is_guest=is_guest,
                # Like other servers, start the profile with the localpart as display name.
                displayname=localpart if displayname is None else displayname,
            )
    except IntegrityError:
        raise MatrixError(400, "M_USER_IN_USE", "User ID already taken") from None


# --------------------------------------------------------------------------- login sessions


@dataclass(frozen=True)
class LoginSession:
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None = None
    expires_in_ms: int | None = None


def generate_device_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(DEVICE_ID_LENGTH))


def check_device_params(*, device_id: object, display_name: object) -> tuple[str | None, str | None]:
    if device_id is not None:
        if not isinstance(device_id, str) or not device_id:
            raise MatrixError(400, "M_INVALID_PARAM", "device_id must be a non-empty string")
        if len(device_id) > MAX_DEVICE_ID_LENGTH:
            raise MatrixError(
                400, "M_INVALID_PARAM", f"device_id may not be longer than {MAX_DEVICE_ID_LENGTH} characters"
            )
    return device_id, check_device_display_name(display_name)


def check_device_display_name(display_name: object) -> str | None:
    if display_name is None:
        return None
    if not isinstance(display_name, str):
        raise MatrixError(400, "M_INVALID_PARAM", "The device display name must be a string")
    if len(display_name) > MAX_DEVICE_DISPLAY_NAME:
        raise MatrixError(
            400,
            "M_INVALID_PARAM",
            f"The device display name may not be longer than {MAX_DEVICE_DISPLAY_NAME} characters",
        )
    return display_name


def do_start_login_session(
    *,
    user: User,
    device_id: str | None,
    initial_display_name: str | None,
    want_refresh_token: bool,
    ip: str | None = None,
    user_agent: str | None = None,
) -> LoginSession:
    """A device (new, or the client's existing one) and tokens for it.

    Spec: "If device_id does not correspond to a known client device, a new device
    will be created"; its display name is only set for a new device. Refresh tokens
    are issued when asked for and access tokens have a lifetime.
    """
    lifetime = access_token_lifetime_ms() if want_refresh_token else None
    with transaction.atomic():
        device: Device | None = None
        if device_id is None:
            for _ in range(10):
                candidate = generate_device_id()
                if account_store.get_device(user, candidate) is None:
                    device_id = candidate
                    break
            assert device_id is not None
        else:
            device = account_store.get_device(user, device_id)
        new_device = device is None
        if device is None:
            device = account_store.upsert_device(user, device_id, initial_display_name)
        # Logging in is being seen: the device list then always knows where and when.
        account_store.touch_device(device, ip=ip, user_agent=user_agent)
        refresh_token: str | None = None
        refresh_row = None
        valid_until = None
        if lifetime is not None:
            refresh_token, refresh_row = account_store.create_refresh_token(user, device)
            valid_until = now_ms() + lifetime
        access_token = account_store.create_access_token(
            user, device, valid_until_ms=valid_until, refresh_token=refresh_row
        )
        if new_device:
            _device_list_changed(user.user_id, [device.device_id])
    return LoginSession(
        user_id=user.user_id,
        device_id=device.device_id,
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in_ms=lifetime,
    )


#: How long a token from ``POST /login/get_token`` may be used (Synapse: two minutes).
LOGIN_TOKEN_LIFETIME_MS = 120_000


def do_create_login_token(*, user: User) -> tuple[str, int]:
    """A single-use ``m.login.token`` for ``user`` (e.g. to sign in a new device by QR code)."""
    return account_store.create_login_token(
        user, lifetime_ms=LOGIN_TOKEN_LIFETIME_MS
    ), LOGIN_TOKEN_LIFETIME_MS


def check_login_token(*, token: object) -> User:
    """The user a login token was issued to; 403 M_FORBIDDEN if it is unknown, used or expired."""
    if not isinstance(token, str) or not token or len(token) > 512:
        raise MatrixError(400, "M_MISSING_PARAM", "token is required")
    user = account_store.consume_login_token(token)
    if user is None or user.deactivated:
        raise MatrixError(403, "M_FORBIDDEN", "Invalid or expired login token")
    return user


def do_refresh_session(*, refresh_token: str) -> LoginSession:
    """Exchange a refresh token for a new access token and refresh token (rotation).

    A refresh token is spent by its first use: a second use is refused with
    M_UNKNOWN_TOKEN, so a stolen copy is worthless once the client refreshed.
    The access token issued with it is revoked at once (spec: the server "can
    choose to invalidate the old access token immediately").
    """
    unknown = MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown refresh token", soft_logout=False)
    row = account_store.get_refresh_token(refresh_token)
    if row is None or row.used_ts is not None or row.user.deactivated:
        raise unknown
    lifetime = access_token_lifetime_ms()
    with transaction.atomic():
        if not account_store.mark_refresh_token_used(row):
            raise unknown
        account_store.delete_access_tokens_of_refresh_token(row)
        account_store.delete_refresh_token(row)
        new_refresh, new_row = account_store.create_refresh_token(row.user, row.device)
        valid_until = now_ms() + lifetime if lifetime is not None else None
        access = account_store.create_access_token(
            row.user, row.device, valid_until_ms=valid_until, refresh_token=new_row
        )
    return LoginSession(
        user_id=row.user.user_id,
        device_id=row.device.device_id,
        access_token=access,
        refresh_token=new_refresh,
        expires_in_ms=lifetime,
    )


def get_user_for_login(user_identifier: str) -> User | None:
    """The local account named by a login's ``user``: a localpart or a full user ID.

    Localparts are lower case by grammar, so ``Alice`` finds ``@alice`` when no
    account has the exact (historical) name.
    """
    if user_identifier.startswith("@"):
        try:
            localpart, server = parse_user_id(user_identifier)
        except ValueError:
            return None
        if server != get_server_name():
            return None
    else:
        localpart = user_identifier
    user = account_store.get_user_by_localpart(localpart)
    if user is None and localpart != localpart.lower():
        user = account_store.get_user_by_localpart(localpart.lower())
    return user


def check_user_password(*, user: User, password: str) -> bool:
    """Whether ``password`` is the user's. Deactivated accounts have none, so never match."""
    if user.deactivated or not user.password_hash:
        return False
    if not check_password(password, user.password_hash):
        return False
    if needs_rehash(user.password_hash):
        account_store.set_password_hash(user, hash_password(password))
    return True


# --------------------------------------------------------------------------- logout, devices


def do_logout(*, user: User, device: Device | None, token_id: int | None) -> None:
    """Spec ``POST /logout``: the access token is invalidated and its device deleted."""
    if device is not None:
        do_delete_devices(user=user, device_ids=[device.device_id])
    elif token_id is not None:
        account_store.delete_access_token(token_id)


def do_logout_all(*, user: User) -> None:
    """Spec ``POST /logout/all``: every access token and device of the user."""
    with transaction.atomic():
        account_store.delete_all_access_tokens(user)
        _delete_devices(user, [d.device_id for d in account_store.get_devices(user)])


def do_delete_devices(*, user: User, device_ids: list[str]) -> int:
    """Delete devices with their access and refresh tokens (which then fail at once)."""
    with transaction.atomic():
        return _delete_devices(user, device_ids)


def _delete_devices(user: User, device_ids: list[str]) -> int:
    """Devices go with their tokens (cascade), E2EE keys and to-device inbox."""

    if not device_ids:
        return 0
    # A device's keys are part of the user's key state (issue #15): a deletion racing a key
    # upload or a cross-signing reset is serialised with it under the same per-user lock, so a
    # /keys/query answer never shows a deleted device's keys nor a half-applied upload.
    key_store.lock_user_keys(user_ids=[user.user_id])
    deleted = account_store.delete_devices(user, device_ids)
    to_device_store.delete_device_messages(user_id=user.user_id, device_ids=device_ids)
    if deleted:
        _device_list_changed(user.user_id, device_ids, deleted=True)
    return deleted


def get_devices(*, user: User) -> list[Device]:
    return account_store.get_devices(user)


def access_device(*, user: User, device_id: str) -> Device:
    device = account_store.get_device(user, device_id)
    if device is None:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown device")
    return device


def check_update_device(*, user: User, device_id: str, display_name: object) -> None:
    device = access_device(user=user, device_id=device_id)
    name = check_device_display_name(display_name)
    if name is not None and name != device.display_name:
        with transaction.atomic():
            account_store.set_device_display_name(device, name)
            _device_list_changed(user.user_id, [device_id])


# --------------------------------------------------------------------------- password, deactivation


def do_change_password(
    *,
    user: User,
    new_password: str,
    logout_devices: bool,
    keep_device: Device | None,
    keep_token_id: int | None,
) -> None:
    """Spec ``POST /account/password``: with ``logout_devices`` (default) every other
    device and access token of the user is revoked; the requesting one stays."""
    with transaction.atomic():
        account_store.set_password_hash(user, hash_password(new_password))
        if logout_devices:
            account_store.delete_all_access_tokens(user, except_token_id=keep_token_id)
            keep = keep_device.device_id if keep_device else None
            _delete_devices(
                user, [d.device_id for d in account_store.get_devices(user) if d.device_id != keep]
            )


def do_deactivate_user(*, user: User) -> None:
    """Spec ``POST /account/deactivate``: revoke every device and token, erase the
    profile, make the account unusable (its ID stays taken), and leave every room.

    The account is closed first, so it cannot join anything while it leaves. The
    rooms are left once the closure is committed, each leave in its own
    transaction: a caller's transaction must not hold the event stream (and so
    every room's sends) for as long as leaving hundreds of rooms takes.
    """
    with transaction.atomic():
        account_store.set_profile(
            user, displayname=None, avatar_url=None, fields=("displayname", "avatar_url")
        )
        account_store.delete_all_access_tokens(user)
        account_store.set_deactivated(user)
        _delete_devices(user, [d.device_id for d in account_store.get_devices(user)])
        transaction.on_commit(lambda: do_leave_all_rooms(user_id=user.user_id), robust=True)


def do_leave_all_rooms(*, user_id: str) -> list[str]:
    """Leave (or reject the invite to, or rescind the knock on) every room; returns the rooms left.

    A room where the leave is refused (e.g. the user is banned there meanwhile) is skipped.
    """
    left: list[str] = []
    for room_id in room_store.get_rooms_for_user(user_id, memberships=("join", "invite", "knock")):
        try:
            send_local_event(
                room_id=room_id, sender=user_id, event_type="m.room.member", content={"membership": "leave"},
                state_key=user_id,
            )  # fmt: skip
        except MatrixError as exc:
            logger.warning("could not leave %s for %s: %s", room_id, user_id, exc)
            continue
        left.append(room_id)
    return left


# --------------------------------------------------------------------------- operator restrictions


def check_not_suspended(user: User | None) -> None:
    """What a suspended account may not do (send, join, invite, knock, change its profile):
    403 ``M_USER_SUSPENDED`` (MSC3823, as Synapse). Reading and leaving rooms stay allowed."""
    if user is not None and user.suspended:
        raise MatrixError(403, "M_USER_SUSPENDED", "Your account has been suspended by a server admin")


def is_shadow_banned(user: User | None) -> bool:
    """A shadow-banned account's sends and invites "succeed" and go nowhere (Synapse's shadow ban)."""
    return user is not None and user.shadow_banned


def fake_event_id() -> str:
    """What a shadow-banned sender is told its event got (nothing was stored)."""
    return "$" + secrets.token_urlsafe(32)

"""Accounts, devices, access and refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, models

from dagcore.clock import now_ms
from dagcore.models import AccessToken, Device, LoginToken, RatelimitOverride, RefreshToken, User
from dagcore.store.e2e_keys import delete_keys_of_deleted_devices

LOGIN_TOKEN_PREFIX = "dgm_lt_"  # noqa: S105 - a prefix, not a secret
ACCESS_TOKEN_PREFIX = "dgm_at_"  # noqa: S105 - a prefix, not a secret
REFRESH_TOKEN_PREFIX = "dgm_rt_"  # noqa: S105


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


# --------------------------------------------------------------------------- users


def get_user(user_id: str) -> User | None:
    return User.objects.filter(user_id=user_id).first()


def get_erased_users(user_ids: Iterable[str]) -> set[str]:
    """Which of ``user_ids`` are erased accounts (deactivated with ``erase``: GDPR)."""
    wanted = set(user_ids)
    if not wanted:
        return set()
    return set(User.objects.filter(user_id__in=wanted, erased=True).values_list("user_id", flat=True))


def get_user_by_localpart(localpart: str) -> User | None:
    return User.objects.filter(localpart=localpart).first()


def user_exists(localpart: str) -> bool:
    return User.objects.filter(localpart=localpart).exists()


def insert_user(
    *,
    user_id: str,
    localpart: str,
    password_hash: str | None,
    is_admin: bool = False,
    is_guest: bool = False,
    displayname: str | None = None,
) -> User:
    return User.objects.create(
        user_id=user_id,
        localpart=localpart,
        password_hash=password_hash,
        is_admin=is_admin,
        is_guest=is_guest,
        created_ts=now_ms(),
        displayname=displayname,
    )


def set_password_hash(user: User, password_hash: str | None) -> None:
    user.password_hash = password_hash
    user.save(update_fields=["password_hash"])


def set_deactivated(user: User) -> None:
    user.deactivated = True
    user.password_hash = None
    user.save(update_fields=["deactivated", "password_hash"])


def set_admin(user: User, is_admin: bool) -> None:
    user.is_admin = is_admin
    user.save(update_fields=["is_admin"])


def set_profile(
    user: User, *, displayname: str | None = None, avatar_url: str | None = None, fields: tuple[str, ...]
) -> None:
    if "displayname" in fields:
        user.displayname = displayname
    if "avatar_url" in fields:
        user.avatar_url = avatar_url
    user.save(update_fields=list(fields))


def count_users() -> int:
    return User.objects.count()


# --------------------------------------------------------------------------- devices


def get_device(user: User, device_id: str) -> Device | None:
    return Device.objects.filter(user=user, device_id=device_id).first()


def get_devices(user: User) -> list[Device]:
    return list(Device.objects.filter(user=user).order_by("device_id"))


def upsert_device(user: User, device_id: str, display_name: str | None) -> Device:
    device = get_device(user, device_id)
    if device is None:
        return Device.objects.create(
            user=user, device_id=device_id, display_name=display_name, created_ts=now_ms()
        )
    if display_name is not None and device.display_name != display_name:
        device.display_name = display_name
        device.save(update_fields=["display_name"])
    return device


def delete_devices(user: User, device_ids: list[str]) -> int:
    """Deleting a device deletes its tokens (cascade): they fail at once."""
    _, counts = Device.objects.filter(user=user, device_id__in=device_ids).delete()
    delete_keys_of_deleted_devices(user_id=user.user_id)
    return counts.get(Device._meta.label, 0)


def delete_all_devices(user: User, *, except_device_id: str | None = None) -> int:
    qs = Device.objects.filter(user=user)
    if except_device_id is not None:
        qs = qs.exclude(device_id=except_device_id)
    _, counts = qs.delete()
    delete_keys_of_deleted_devices(user_id=user.user_id)
    return counts.get(Device._meta.label, 0)


def set_device_display_name(device: Device, display_name: str) -> None:
    device.display_name = display_name
    device.save(update_fields=["display_name"])


#: ``last_seen_*`` is written at most this often per device: it is shown to users
#: ("last seen 5 minutes ago"), not used for decisions, so a write per request is waste.
LAST_SEEN_INTERVAL_MS = 60_000


def touch_device(device: Device, *, ip: str | None, user_agent: str | None) -> None:
    """Record that ``device`` was used now; no query at all if it was recorded within the interval."""
    now = now_ms()
    if device.last_seen_ts is not None and now - device.last_seen_ts < LAST_SEEN_INTERVAL_MS:
        return
    ip = (ip or "")[:64] or None
    user_agent = (user_agent or "")[:512] or None
    Device.objects.filter(id=device.id).update(
        last_seen_ts=now, last_seen_ip=ip, last_seen_user_agent=user_agent
    )
    device.last_seen_ts, device.last_seen_ip, device.last_seen_user_agent = now, ip, user_agent


def update_device_last_seen(device: Device, *, ip: str | None, user_agent: str | None) -> None:
    device.last_seen_ts = now_ms()
    device.last_seen_ip = (ip or "")[:64] or None
    device.last_seen_user_agent = (user_agent or "")[:512] or None
    device.save(update_fields=["last_seen_ts", "last_seen_ip", "last_seen_user_agent"])


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenOwner:
    user: User
    device: Device | None
    token_id: int
    valid_until_ms: int | None
    #: An operator's message rate limit for the user (messages per second, burst), read in
    #: the same query so ``PUT /send`` pays no statement of its own for it; None: none set.
    ratelimit_override: tuple[int, int] | None = None


def create_access_token(
    user: User,
    device: Device | None,
    *,
    valid_until_ms: int | None = None,
    refresh_token: RefreshToken | None = None,
) -> str:
    token = new_token(ACCESS_TOKEN_PREFIX)
    AccessToken.objects.create(
        token_hash=token_digest(token),
        user=user,
        device=device,
        created_ts=now_ms(),
        valid_until_ms=valid_until_ms,
        refresh_token=refresh_token,
    )
    return token


def create_refresh_token(user: User, device: Device) -> tuple[str, RefreshToken]:
    token = new_token(REFRESH_TOKEN_PREFIX)
    row = RefreshToken.objects.create(
        token_hash=token_digest(token), user=user, device=device, created_ts=now_ms()
    )
    return token, row


def get_refresh_token(token: str) -> RefreshToken | None:
    return (
        RefreshToken.objects.select_related("user", "device").filter(token_hash=token_digest(token)).first()
    )


def mark_refresh_token_used(row: RefreshToken) -> bool:
    """Atomically claim a refresh token; False when it was already used."""
    return RefreshToken.objects.filter(id=row.id, used_ts__isnull=True).update(used_ts=now_ms()) == 1


def delete_refresh_token(row: RefreshToken) -> None:
    RefreshToken.objects.filter(id=row.id).delete()


def delete_access_tokens_of_refresh_token(row: RefreshToken) -> None:
    """Revoke the access tokens issued together with refresh token ``row``."""
    AccessToken.objects.filter(refresh_token=row).delete()


def _token_owner_sql() -> tuple[str, list[str], list[str]]:
    """The token owner's query, written once from the models (raw SQL: it runs on every
    request, and building the ORM query of a two-table ``select_related`` cost more CPU
    than the database spent answering it)."""
    user_fields = [f.attname for f in User._meta.concrete_fields]
    device_fields = [f.attname for f in Device._meta.concrete_fields]
    override_meta = RatelimitOverride._meta
    columns = ["t.id", "t.valid_until_ms", "o.messages_per_second", "o.burst_count"]
    columns += [f"u.{f.column}" for f in User._meta.concrete_fields]
    columns += [f"d.{f.column}" for f in Device._meta.concrete_fields]
    token_meta = AccessToken._meta
    sql = (
        f"SELECT {', '.join(columns)} FROM {token_meta.db_table} t "
        f"JOIN {User._meta.db_table} u ON u.{User._meta.pk.column} = t.{token_meta.get_field('user').column} "
        f"LEFT JOIN {Device._meta.db_table} d ON d.{Device._meta.pk.column} = "
        f"t.{token_meta.get_field('device').column} "
        f"LEFT JOIN {override_meta.db_table} o ON o.{override_meta.get_field('user').column} = "
        f"u.{User._meta.pk.column} WHERE t.token_hash = %s"
    )
    return sql, user_fields, device_fields


_TOKEN_OWNER: tuple[str, list[str], list[str]] | None = None
_USER_BOOLEANS = frozenset(
    f.attname for f in User._meta.concrete_fields if isinstance(f, models.BooleanField)
)


def get_token_owner(token: str) -> TokenOwner | None:
    """One indexed query per request: no cache, so a revoked token fails at once."""
    global _TOKEN_OWNER
    if _TOKEN_OWNER is None:
        _TOKEN_OWNER = _token_owner_sql()
    sql, user_fields, device_fields = _TOKEN_OWNER
    with connection.cursor() as cur:
        cur.execute(sql, [token_digest(token)])
        row = cur.fetchone()
    if row is None:
        return None
    n = len(user_fields)
    # SQLite answers booleans as 0/1 (the ORM converts them; raw SQL must).
    user_values = [
        bool(v) if f in _USER_BOOLEANS else v for f, v in zip(user_fields, row[4 : 4 + n], strict=True)
    ]
    user = User.from_db(connection.alias, user_fields, user_values)
    device_values = row[4 + n :]
    device = (
        Device.from_db(connection.alias, device_fields, device_values)
        if device_values[0] is not None
        else None
    )
    override = (int(row[2]), int(row[3])) if row[2] is not None else None
    return TokenOwner(
        user=user, device=device, token_id=row[0], valid_until_ms=row[1], ratelimit_override=override
    )


def delete_access_token(token_id: int) -> None:
    AccessToken.objects.filter(id=token_id).delete()


def delete_all_access_tokens(user: User, *, except_token_id: int | None = None) -> None:
    qs = AccessToken.objects.filter(user=user)
    if except_token_id is not None:
        qs = qs.exclude(id=except_token_id)
    qs.delete()


# --------------------------------------------------------------------------- login tokens


def create_login_token(user: User, *, lifetime_ms: int) -> str:
    token = new_token(LOGIN_TOKEN_PREFIX)
    now = now_ms()
    LoginToken.objects.create(
        token_hash=token_digest(token), user=user, created_ts=now, expires_ts=now + lifetime_ms
    )
    return token


def consume_login_token(token: str) -> User | None:
    """The token's user if it is valid, unused and unexpired — and mark it used, atomically."""
    digest = token_digest(token)
    now = now_ms()
    claimed = LoginToken.objects.filter(token_hash=digest, used_ts__isnull=True, expires_ts__gt=now).update(
        used_ts=now
    )
    if claimed != 1:
        return None
    row = LoginToken.objects.select_related("user").filter(token_hash=digest).first()
    return row.user if row is not None else None


def delete_expired_login_tokens(before_ts: int) -> int:
    deleted, _ = LoginToken.objects.filter(expires_ts__lt=before_ts).delete()
    return deleted

"""Queries and writes of the operators' user administration (admin API and console)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, F, Max, Q, QuerySet

from dagcore.models import AccessToken, AccountData, Device, LocalMedia, RoomMembership, User
from dagcore.models.uia import RegistrationToken

#: Synapse's ``order_by`` values for the user list, as columns (``name`` = the user ID).
USER_ORDER_COLUMNS = {
    "name": "user_id",
    "is_guest": "is_guest",
    "admin": "is_admin",
    "user_type": "user_id",  # Dagma has no user types: every user's is null
    "deactivated": "deactivated",
    "shadow_banned": "shadow_banned",
    "displayname": "displayname",
    "avatar_url": "avatar_url",
    "creation_ts": "created_ts",
    "last_seen_ts": "last_seen_ts",
    "locked": "locked",
    "suspended": "suspended",
}


@dataclass(frozen=True)
class UserFilter:
    guests: bool = True
    #: True: only deactivated; False: none; None: both (v3 semantics; v2 maps its own).
    deactivated: bool | None = False
    admins: bool | None = None
    locked: bool = True
    only_locked: bool = False
    #: Substring of the user ID or display name.
    name: str | None = None
    #: Substring of the user ID only.
    user_id: str | None = None
    suspended: bool | None = None
    shadow_banned: bool | None = None


def _users(f: UserFilter) -> QuerySet[User]:
    qs = User.objects.all()
    if not f.guests:
        qs = qs.filter(is_guest=False)
    if f.deactivated is not None:
        qs = qs.filter(deactivated=f.deactivated)
    if f.admins is not None:
        qs = qs.filter(is_admin=f.admins)
    if not f.locked:
        qs = qs.filter(locked=False)
    if f.only_locked:
        qs = qs.filter(locked=True)
    if f.suspended is not None:
        qs = qs.filter(suspended=f.suspended)
    if f.shadow_banned is not None:
        qs = qs.filter(shadow_banned=f.shadow_banned)
    if f.name:
        qs = qs.filter(
            Q(localpart__icontains=f.name) | Q(displayname__icontains=f.name) | Q(user_id__icontains=f.name)
        )
    elif f.user_id:
        qs = qs.filter(user_id__icontains=f.user_id)
    return qs


def list_users(
    *, offset: int, limit: int, filters: UserFilter, order_by: str = "name", backwards: bool = False
) -> tuple[list[User], dict[int, int | None], int]:
    """A page of accounts, each one's last-seen time (max over its devices), and the total."""
    qs = _users(filters).annotate(last_seen_ts=Max("devices__last_seen_ts"))
    column = USER_ORDER_COLUMNS[order_by]
    primary = F(column).desc(nulls_last=True) if backwards else F(column).asc(nulls_first=True)
    page = list(qs.order_by(primary, "user_id")[offset : offset + limit])
    last_seen = {u.id: u.last_seen_ts for u in page}
    return list[User](page), last_seen, _users(filters).count()


def last_seen_ts(user: User) -> int | None:
    value = Device.objects.filter(user=user).aggregate(ts=Max("last_seen_ts"))["ts"]
    return int(value) if value is not None else None


def count_user_sessions(user: User) -> dict[str, int]:
    """What logging the user out everywhere would end: devices and access tokens."""
    return {
        "devices": Device.objects.filter(user=user).count(),
        "access_tokens": AccessToken.objects.filter(user=user).count(),
    }


def set_user_flags(user: User, **flags: bool) -> None:
    """Set operator flags (``suspended``, ``locked``, ``shadow_banned``, ``erased``, ``is_admin``)."""
    for name, value in flags.items():
        setattr(user, name, value)
    user.save(update_fields=list(flags))


def set_reactivated(user: User, password_hash: str | None) -> None:
    user.deactivated = False
    user.erased = False
    user.password_hash = password_hash
    user.save(update_fields=["deactivated", "erased", "password_hash"])


# --------------------------------------------------------------------------- what a user has


def get_memberships(user_id: str) -> dict[str, str]:
    rows = RoomMembership.objects.filter(user_id=user_id).values_list("room__room_id", "membership")
    return {room_id: membership for room_id, membership in rows}


def get_joined_rooms(user_id: str) -> list[str]:
    rows = RoomMembership.objects.filter(user_id=user_id, membership="join").values_list(
        "room__room_id", flat=True
    )
    return sorted(rows)


def get_account_data(user_id: str) -> list[tuple[str, str, str]]:
    """Every (room ID or "", type, JSON content) of the user."""
    return list(AccountData.objects.filter(user_id=user_id).values_list("room_id", "type", "content"))


MEDIA_ORDER_COLUMNS = {
    "media_id": "media_id",
    "upload_name": "upload_name",
    "created_ts": "created_ts",
    "last_access_ts": "last_access_ts",
    "media_length": "size",
    "media_type": "content_type",
    "quarantined_by": "quarantined_by",
    "safe_from_quarantine": "media_id",  # nothing is marked safe in Dagma
}


def list_user_media(
    *, user_id: str, offset: int, limit: int, order_by: str, backwards: bool
) -> tuple[list[LocalMedia], int]:
    qs = LocalMedia.objects.filter(uploader=user_id)
    column = MEDIA_ORDER_COLUMNS[order_by]
    primary = F(column).desc(nulls_last=True) if backwards else F(column).asc(nulls_first=True)
    return list(qs.order_by(primary, "media_id")[offset : offset + limit]), qs.count()


def count_user_media(user_id: str) -> int:
    return LocalMedia.objects.filter(uploader=user_id).count()


# --------------------------------------------------------------------------- registration tokens


def list_registration_tokens(*, valid: bool | None, now: int) -> list[RegistrationToken]:
    qs = RegistrationToken.objects.all()
    usable = (Q(uses_allowed__isnull=True) | Q(uses_allowed__gt=F("pending") + F("completed"))) & (
        Q(expiry_time__isnull=True) | Q(expiry_time__gt=now)
    )
    if valid is True:
        qs = qs.filter(usable)
    elif valid is False:
        qs = qs.exclude(usable)
    return list(qs.order_by("token"))


def insert_registration_token(
    *, token: str, uses_allowed: int | None, expiry_time: int | None
) -> RegistrationToken | None:
    """The new token, or None when it exists already."""
    obj, created = RegistrationToken.objects.get_or_create(
        token=token, defaults={"uses_allowed": uses_allowed, "expiry_time": expiry_time}
    )
    return obj if created else None


def update_registration_token(token: RegistrationToken, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(token, name, value)
    if fields:
        token.save(update_fields=list(fields))


def count_users_by_flag() -> dict[str, int]:
    row = User.objects.aggregate(
        total=Count("id"),
        active=Count("id", filter=Q(deactivated=False)),
        admins=Count("id", filter=Q(is_admin=True, deactivated=False)),
        guests=Count("id", filter=Q(is_guest=True)),
    )
    return {k: int(v or 0) for k, v in row.items()}


def find_user_events_to_redact(
    *, user_id: str, room_ids: list[str], after_ts: int | None, before_ts: int | None, limit_per_room: int
) -> list[tuple[str, str]]:
    """(room ID, event ID) of the user's unredacted, non-state, accepted events, newest first,
    at most ``limit_per_room`` per room (Synapse's ``user/{userId}/redact`` selection)."""
    from dagcore.models import Event

    out: list[tuple[str, str]] = []
    for room_id in room_ids:
        qs = Event.objects.filter(
            room__room_id=room_id, sender=user_id, state_key__isnull=True, redacted_by__isnull=True,
            outlier=False, rejected_reason__isnull=True,
        ).exclude(type="m.room.redaction")  # fmt: skip
        if after_ts is not None:
            qs = qs.filter(origin_server_ts__gte=after_ts)
        if before_ts is not None:
            qs = qs.filter(origin_server_ts__lte=before_ts)
        out += [
            (room_id, e)
            for e in qs.order_by("-stream_ordering").values_list("event_id", flat=True)[:limit_per_room]
        ]
    return out


def get_member_events_since(
    *, user_id: str, since_ts: int, as_sender: bool
) -> list[tuple[str, str | None, str]]:
    """(room ID, state key, JSON) of the accepted ``m.room.member`` events received since
    ``since_ts`` sent by the user (``as_sender``) or about the user."""
    from dagcore.models import Event

    qs = Event.objects.filter(type="m.room.member", received_ts__gte=since_ts, rejected_reason__isnull=True)
    qs = qs.filter(sender=user_id) if as_sender else qs.filter(state_key=user_id)
    return list(qs.values_list("room__room_id", "state_key", "json"))

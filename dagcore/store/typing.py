"""Typing notices and their stream (spec: client-server API "Typing Notifications")."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import IntegrityError, transaction

from dagcore.models import Room, TypingNotice


def lock_typing_expiry(*, room: Room, user_id: str) -> int | None:
    """The user's current notice expiry in the room (row-locked), None if they never typed there."""
    value = (
        TypingNotice.objects.select_for_update()
        .filter(room=room, user_id=user_id)
        .values_list("expires_ts", flat=True)
        .first()
    )
    return int(value) if value is not None else None


def write_typing(*, room: Room, user_id: str, expires_ts: int) -> None:
    """Set the expiry (0: stopped); a new row gets a pending stream position."""
    if TypingNotice.objects.filter(room=room, user_id=user_id).update(expires_ts=expires_ts):
        return
    try:
        with transaction.atomic():
            TypingNotice.objects.create(room=room, user_id=user_id, expires_ts=expires_ts, stream_id=-1)
    except IntegrityError:
        TypingNotice.objects.filter(room=room, user_id=user_id).update(expires_ts=expires_ts)


def set_typing_stream_id(*, room: Room, user_id: str, stream_id: int) -> None:
    TypingNotice.objects.filter(room=room, user_id=user_id).update(stream_id=stream_id)


def claim_expired_typing(*, now: int, limit: int = 1000) -> list[tuple[int, str, str]]:
    """Lock and clear notices that ran out: ``(row id, room ID, user ID)``.

    ``skip_locked`` lets several processes sweep at once without waiting on each other.
    """
    rows = list(
        TypingNotice.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(expires_ts__gt=0, expires_ts__lte=now)
        .values_list("id", "room__room_id", "user_id")[:limit]
    )
    if rows:
        TypingNotice.objects.filter(id__in=[r[0] for r in rows]).update(expires_ts=0, stream_id=-1)
    return [(int(i), r, u) for i, r, u in rows]


def set_typing_stream_ids(*, row_ids: Sequence[int], stream_id: int) -> None:
    TypingNotice.objects.filter(id__in=list(row_ids)).update(stream_id=stream_id)


def get_next_expiry(*, after: int) -> int | None:
    value = (
        TypingNotice.objects.filter(expires_ts__gt=after)
        .order_by("expires_ts")
        .values_list("expires_ts", flat=True)
        .first()
    )
    return int(value) if value is not None else None


def get_typing_rooms_changed(*, room_nids: Sequence[int], after: int, upto: int) -> set[int]:
    """Rooms (of ``room_nids``) whose typing notices changed in ``(after, upto]``."""
    if not room_nids:
        return set()
    return set(
        TypingNotice.objects.filter(room_id__in=list(room_nids), stream_id__gt=after, stream_id__lte=upto)
        .values_list("room_id", flat=True)
        .distinct()
    )


def get_typing_users(*, room_nids: Sequence[int], now: int) -> dict[int, list[str]]:
    """Who is typing now in each of the rooms (room nid -> user IDs)."""
    if not room_nids:
        return {}
    out: dict[int, list[str]] = {}
    for room_nid, user_id in (
        TypingNotice.objects.filter(room_id__in=list(room_nids), expires_ts__gt=now)
        .order_by("user_id")
        .values_list("room_id", "user_id")
    ):
        out.setdefault(room_nid, []).append(user_id)
    return out

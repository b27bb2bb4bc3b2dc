"""Pushers (``/pushers``) and their delivery positions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from dagcore.models import Pusher, RoomMembership


@dataclass(frozen=True)
class PusherRow:
    id: int
    user_id: str
    kind: str
    app_id: str
    pushkey: str
    pushkey_ts: int
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: str
    last_stream_ordering: int
    failing_since: int | None


_FIELDS = [
    "id", "user_id", "kind", "app_id", "pushkey", "pushkey_ts", "app_display_name",
    "device_display_name", "profile_tag", "lang", "data", "last_stream_ordering", "failing_since",
]  # fmt: skip


def get_pushers(user_id: str) -> list[PusherRow]:
    return [
        PusherRow(**row) for row in Pusher.objects.filter(user_id=user_id).order_by("id").values(*_FIELDS)
    ]


def upsert_pusher(
    *,
    user_id: str,
    device_key: int | None,
    fields: dict[str, Any],
    start_stream_ordering: int,
) -> None:
    """Create the pusher or update the one with the same (user, app_id, pushkey).

    A new pusher starts at ``start_stream_ordering`` (nothing before it is pushed);
    an updated one keeps its delivery position.
    """
    updated = Pusher.objects.filter(
        user_id=user_id, app_id=fields["app_id"], pushkey=fields["pushkey"]
    ).update(device_id=device_key, failing_since=None, **fields)
    if not updated:
        Pusher.objects.create(
            user_id=user_id, device_id=device_key, last_stream_ordering=start_stream_ordering, **fields
        )


def delete_pusher(*, user_id: str, app_id: str, pushkey: str) -> int:
    deleted, _ = Pusher.objects.filter(user_id=user_id, app_id=app_id, pushkey=pushkey).delete()
    return deleted


def delete_pushers_of_others(*, user_id: str, app_id: str, pushkey: str) -> int:
    """Spec ``append: false``: the same app and pushkey registered by other users goes."""
    deleted, _ = Pusher.objects.filter(app_id=app_id, pushkey=pushkey).exclude(user_id=user_id).delete()
    return deleted


def delete_pushers_by_pushkey(*, app_id: str, pushkeys: list[str], pusher_ids: list[int]) -> int:
    """Pushkeys a gateway rejected, among the pushers it was sent for."""
    deleted, _ = Pusher.objects.filter(id__in=pusher_ids, app_id=app_id, pushkey__in=pushkeys).delete()
    return deleted


def user_ids_with_pushers_in_room(room_nid: int) -> list[str]:
    """Local users joined or invited to the room who have at least one pusher (one query)."""
    members = RoomMembership.objects.filter(
        room_id=room_nid, is_local=True, membership__in=("join", "invite")
    ).values("user_id")
    return sorted(set(Pusher.objects.filter(user_id__in=members).values_list("user_id", flat=True)))


def user_ids_with_pushers() -> list[str]:
    return sorted(set(Pusher.objects.values_list("user_id", flat=True)))


def any_pushers() -> bool:
    return Pusher.objects.exists()


def claim_pushers(*, user_id: str, now: int, until: int) -> list[PusherRow]:
    """Claim the user's pushers no other worker holds (a conditional UPDATE, on any database)."""
    free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    ids = list(Pusher.objects.filter(free, user_id=user_id).values_list("id", flat=True))
    claimed = [pid for pid in ids if Pusher.objects.filter(free, id=pid).update(claimed_until=until) == 1]
    if not claimed:
        return []
    return [PusherRow(**row) for row in Pusher.objects.filter(id__in=claimed).order_by("id").values(*_FIELDS)]


def release_pusher(
    pusher_id: int,
    *,
    last_stream_ordering: int | None,
    failing_since: int | None,
    hold_until: int | None = None,
) -> None:
    """Record how far delivery got (``None``: unchanged) and let workers have the pusher again
    (from ``hold_until`` on, if given: a failing gateway's back-off)."""
    changes: dict[str, Any] = {"claimed_until": hold_until, "failing_since": failing_since}
    if last_stream_ordering is not None:
        changes["last_stream_ordering"] = last_stream_ordering
    Pusher.objects.filter(id=pusher_id).update(**changes)

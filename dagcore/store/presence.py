"""Presence of local users and its stream (spec: client-server API "Presence")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q

from dagcore.models import Presence, Room, RoomMembership, RoomServer


@dataclass(frozen=True, slots=True)
class PresenceRow:
    user_id: str
    state: str
    status_msg: str | None
    last_active_ts: int
    last_sync_ts: int
    stream_id: int


_FIELDS = ("user_id", "state", "status_msg", "last_active_ts", "last_sync_ts", "stream_id")


def get_presence(user_id: str) -> PresenceRow | None:
    row = Presence.objects.filter(user_id=user_id).values_list(*_FIELDS).first()
    return PresenceRow(*row) if row else None


def lock_presence(user_id: str) -> PresenceRow | None:
    row = Presence.objects.select_for_update().filter(user_id=user_id).values_list(*_FIELDS).first()
    return PresenceRow(*row) if row else None


def write_presence(
    *, user_id: str, state: str, status_msg: str | None, last_active_ts: int, last_sync_ts: int
) -> None:
    """Insert or replace with a pending stream position (set after ``advance_stream``)."""
    fields = {
        "state": state,
        "status_msg": status_msg,
        "last_active_ts": last_active_ts,
        "last_sync_ts": last_sync_ts,
        "stream_id": -1,
    }
    if Presence.objects.filter(user_id=user_id).update(**fields):
        return
    try:
        with transaction.atomic():
            Presence.objects.create(user_id=user_id, **fields)
    except IntegrityError:
        Presence.objects.filter(user_id=user_id).update(**fields)


def set_presence_stream_ids(*, user_ids: Sequence[str], stream_id: int) -> None:
    Presence.objects.filter(user_id__in=list(user_ids)).update(stream_id=stream_id)


def touch_last_sync(*, user_id: str, ts: int) -> None:
    """Keep an online user online (no stream change: nothing others see changed)."""
    Presence.objects.filter(user_id=user_id).update(last_sync_ts=ts)


def claim_timed_out(
    *, sync_cutoff: int, limit: int = 1000, local_suffix: str = "", remote_cutoff: int | None = None
) -> list[str]:
    """Lock users marked online/unavailable whose last sync is older than ``sync_cutoff``.

    With ``local_suffix`` (``:our.server``), other servers' users (whose ``last_sync_ts`` is
    when their server last told us) time out at ``remote_cutoff`` instead."""
    timed_out = Q(last_sync_ts__lt=sync_cutoff)
    if local_suffix and remote_cutoff is not None:
        local = Q(user_id__endswith=local_suffix)
        timed_out = (local & timed_out) | (~local & Q(last_sync_ts__lt=remote_cutoff))
    return list(
        Presence.objects.select_for_update(skip_locked=True)
        .filter(timed_out)
        .exclude(state="offline")
        .values_list("user_id", flat=True)[:limit]
    )


def get_local_users_present(*, local_suffix: str, synced_after: int) -> list[str]:
    """Our users shown online or unavailable who synced after ``synced_after`` (the others are
    offline, or about to be marked so by :func:`claim_timed_out`)."""
    return list(
        Presence.objects.filter(
            user_id__endswith=local_suffix,
            state__in=("online", "unavailable"),
            last_sync_ts__gte=synced_after,
        )
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )


def set_offline(*, user_ids: Sequence[str]) -> None:
    Presence.objects.filter(user_id__in=list(user_ids)).update(state="offline", stream_id=-1)


def get_presence_changed(*, after: int, upto: int) -> list[PresenceRow]:
    """Presence rows that changed in ``(after, upto]`` (an index range scan of the stream)."""
    return [
        PresenceRow(*row)
        for row in Presence.objects.filter(stream_id__gt=after, stream_id__lte=upto).values_list(*_FIELDS)
    ]


def get_current_presence_of_room_members(
    *, viewer: str, room_nids: Sequence[int], upto: int
) -> list[PresenceRow]:
    """Presence of the viewer and of the users not offline joined to ``room_nids`` (initial sync)."""
    sharing = RoomMembership.objects.filter(room_id__in=list(room_nids), membership="join").values("user_id")
    qs = Presence.objects.filter(stream_id__lte=upto).filter(
        Q(user_id=viewer) | (Q(user_id__in=sharing) & ~Q(state="offline"))
    )
    return [PresenceRow(*row) for row in qs.values_list(*_FIELDS)]


def get_joined_room_ids_of(user_id: str) -> list[str]:
    return list(
        RoomMembership.objects.filter(user_id=user_id, membership="join").values_list(
            "room__room_id", flat=True
        )
    )


def users_share_a_room(a: str, b: str) -> bool:
    rooms_of_a = RoomMembership.objects.filter(user_id=a, membership="join").values("room_id")
    return RoomMembership.objects.filter(user_id=b, membership="join", room_id__in=rooms_of_a).exists()


def get_servers_sharing_a_room(user_id: str) -> set[str]:
    """The servers with joined members in any room the user is joined to (presence's audience)."""
    rooms = RoomMembership.objects.filter(user_id=user_id, membership="join").values("room_id")
    return set(
        RoomServer.objects.filter(room_id__in=rooms, joined_count__gt=0)
        .values_list("server_name", flat=True)
        .distinct()
    )


def get_rooms_shared_with_local_users(user_id: str) -> list[Room]:
    """The rooms the (remote) user is joined to where one of our users is joined too."""
    rooms = RoomMembership.objects.filter(user_id=user_id, membership="join").values("room_id")
    shared = RoomMembership.objects.filter(room_id__in=rooms, membership="join", is_local=True).values(
        "room_id"
    )
    return list(Room.objects.filter(id__in=shared).order_by("id"))

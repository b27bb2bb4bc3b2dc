"""The device-list change stream (spec: client-server API "End-to-end encryption", sync extensions)."""

from __future__ import annotations

from collections.abc import Sequence

from dagcore.models import DeviceListChange, RoomMembership, RoomServer


def insert_change(*, user_id: str, visible_to: str = "") -> int:
    """A change row with a pending stream position; returns its row ID. ``visible_to``: the
    one user who is told of it (else everyone sharing a room with ``user_id``)."""
    return int(DeviceListChange.objects.create(user_id=user_id, stream_id=-1, visible_to=visible_to).id)


def set_change_stream_id(*, row_id: int, stream_id: int) -> None:
    DeviceListChange.objects.filter(id=row_id).update(stream_id=stream_id)


def get_changed_users(*, after: int, upto: int, viewer: str) -> set[str]:
    """Users whose devices changed in ``(after, upto]`` as ``viewer`` is told (an index range
    scan of the stream): changes for everyone, and those for ``viewer`` alone."""
    return set(
        DeviceListChange.objects.filter(stream_id__gt=after, stream_id__lte=upto, visible_to__in=["", viewer])
        .values_list("user_id", flat=True)
        .distinct()
    )


def insert_device_changes(*, user_id: str, device_ids: Sequence[str], first_stream_id: int) -> None:
    """Rows for changes of these devices at consecutive positions from ``first_stream_id``."""
    DeviceListChange.objects.bulk_create(
        [
            DeviceListChange(user_id=user_id, device_id=device_id, stream_id=first_stream_id + i)
            for i, device_id in enumerate(device_ids)
        ]
    )


def get_last_device_stream_id(*, user_id: str, before: int | None = None) -> int | None:
    """The user's last device change position (before ``before``): the ``prev_id`` of the next
    ``m.device_list_update`` and the ``stream_id`` of a ``/user/devices`` answer."""
    qs = DeviceListChange.objects.filter(user_id=user_id, stream_id__gt=0).exclude(device_id="")
    if before is not None:
        qs = qs.filter(stream_id__lt=before)
    value = qs.order_by("-stream_id").values_list("stream_id", flat=True).first()
    return None if value is None else int(value)


def get_servers_sharing_rooms(*, user_id: str) -> set[str]:
    """Servers with joined members in a room the user is joined to (the user's own server included)."""
    rooms = RoomMembership.objects.filter(user_id=user_id, membership="join").values("room_id")
    return set(
        RoomServer.objects.filter(room_id__in=rooms, joined_count__gt=0)
        .values_list("server_name", flat=True)
        .distinct()
    )

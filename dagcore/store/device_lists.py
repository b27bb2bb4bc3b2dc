"""The device-list change stream (spec: client-server API "End-to-end encryption", sync extensions)."""

from __future__ import annotations

from dagcore.models import DeviceListChange


def insert_change(*, user_id: str) -> int:
    """A change row with a pending stream position; returns its row ID."""
    return int(DeviceListChange.objects.create(user_id=user_id, stream_id=-1).id)


def set_change_stream_id(*, row_id: int, stream_id: int) -> None:
    DeviceListChange.objects.filter(id=row_id).update(stream_id=stream_id)


def get_changed_users(*, after: int, upto: int) -> set[str]:
    """Users whose devices changed in ``(after, upto]`` (an index range scan of the stream)."""
    return set(
        DeviceListChange.objects.filter(stream_id__gt=after, stream_id__lte=upto)
        .values_list("user_id", flat=True)
        .distinct()
    )

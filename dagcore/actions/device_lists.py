"""The device-list change stream that ``/sync`` reports in ``device_lists.changed``.

The E2EE key endpoints call :func:`mark_device_list_changed` whenever a user's
devices or cross-signing keys change (new device, deleted device, key upload
with new device keys, signature upload).
"""

from __future__ import annotations

from dagcore.notifier import Change, notify
from dagcore.store import device_lists as store
from dagcore.store import presence as presence_store
from dagcore.store import transaction
from dagcore.store.streams import advance_stream


def mark_device_list_changed(*, user_id: str) -> int:
    """Record that ``user_id``'s device list changed; wakes everyone sharing a room. Returns the position."""
    with transaction.atomic():
        row_id = store.insert_change(user_id=user_id)
        rooms = presence_store.get_joined_room_ids_of(user_id)
        position = advance_stream("device_lists")
        store.set_change_stream_id(row_id=row_id, stream_id=position)
        notify(
            Change(stream="device_lists", position=position, user_ids=(user_id,), extra={"room_ids": rooms})
        )
    return position

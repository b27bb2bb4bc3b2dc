"""The device-list change stream that ``/sync`` reports in ``device_lists.changed``.

The E2EE key endpoints call :func:`mark_device_list_changed` whenever a user's
devices or cross-signing keys change (new device, deleted device, key upload
with new device keys, signature upload).

Positions: the change row and the stream position are written in the caller's
transaction, the position last (``advance_stream``): the counter row stays
locked until commit, so device-list positions commit in order, and a reader
whose token is at or after a position has seen that change (``/sync`` and
``/keys/changes`` read the counter, then the rows up to it). The wake-up
(:func:`dagcore.notifier.notify`) carries that position and is sent only after
the commit, so a woken ``/sync`` always finds the change it was woken for.
"""

from __future__ import annotations

import logging

from dagcore.notifier import Change, notify
from dagcore.store import device_lists as store
from dagcore.store import presence as presence_store
from dagcore.store import transaction
from dagcore.store.streams import advance_stream

#: One line per committed change (DEBUG), so the order of key changes, of the
#: requests that made them and of the ``/sync`` answers that reported them can be
#: read side by side.
logger = logging.getLogger("dagma.e2ee")


def mark_device_list_changed(*, user_id: str, reason: str = "devices") -> int:
    """Record that ``user_id``'s device list changed; wakes everyone sharing a room. Returns the position.

    Call it last in the transaction of the change (it takes the stream's counter lock).
    """
    with transaction.atomic():
        row_id = store.insert_change(user_id=user_id)
        rooms = presence_store.get_joined_room_ids_of(user_id)
        position = advance_stream("device_lists")
        store.set_change_stream_id(row_id=row_id, stream_id=position)
        notify(
            Change(stream="device_lists", position=position, user_ids=(user_id,), extra={"room_ids": rooms})
        )
        if logger.isEnabledFor(logging.DEBUG):
            transaction.on_commit(
                lambda: logger.debug("device_lists %d committed: %s (%s)", position, user_id, reason)
            )
    return position

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
from collections.abc import Sequence
from typing import Any

from dagcore.actions.published_keys import PublishedKeys, get_published_keys
from dagcore.federation.edus import queue_edus
from dagcore.notifier import Change, notify
from dagcore.server_keys import get_server_name
from dagcore.store import device_lists as store
from dagcore.store import presence as presence_store
from dagcore.store import transaction
from dagcore.store.streams import advance_stream

#: One line per committed change (DEBUG), so the order of key changes, of the
#: requests that made them and of the ``/sync`` answers that reported them can be
#: read side by side.
logger = logging.getLogger("dagma.e2ee")


def mark_device_list_changed(
    *,
    user_id: str,
    reason: str = "devices",
    device_ids: Sequence[str] = (),
    deleted: bool = False,
    cross_signing: bool = False,
) -> int:
    """Record that local ``user_id``'s device list changed; wakes everyone sharing a room. Returns the position.

    ``device_ids``: the devices that changed (``deleted``: they are gone), one position
    each; ``cross_signing``: the user's master or self-signing key changed. Both are
    told to every other server sharing a room with the user, through the outbox
    (spec: server-server API "Device Management": ``m.device_list_update``, whose
    ``stream_id``/``prev_id`` chain is the user's device positions; "End-to-End
    Encryption": ``m.signing_key_update``).

    Call it last in the transaction of the change (it takes the stream's counter lock).
    """
    devices = sorted(set(device_ids))
    with transaction.atomic():
        rooms = presence_store.get_joined_room_ids_of(user_id)
        destinations = store.get_servers_sharing_rooms(user_id=user_id) - {get_server_name()}
        published = get_published_keys([user_id]) if destinations else None
        prev = store.get_last_device_stream_id(user_id=user_id) if devices else None
        if devices:
            position = advance_stream("device_lists", by=len(devices))
            first = position - len(devices) + 1
            store.insert_device_changes(user_id=user_id, device_ids=devices, first_stream_id=first)
        else:
            row_id = store.insert_change(user_id=user_id)
            position = advance_stream("device_lists")
            store.set_change_stream_id(row_id=row_id, stream_id=position)
        if published is not None:
            _queue_updates(
                user_id=user_id, destinations=destinations, published=published, devices=devices,
                first=position - len(devices) + 1, prev=prev, deleted=deleted, cross_signing=cross_signing,
            )  # fmt: skip
        notify(
            Change(stream="device_lists", position=position, user_ids=(user_id,), extra={"room_ids": rooms})
        )
        if logger.isEnabledFor(logging.DEBUG):
            transaction.on_commit(
                lambda: logger.debug("device_lists %d committed: %s (%s)", position, user_id, reason)
            )
    return position


def _queue_updates(
    *,
    user_id: str,
    destinations: set[str],
    published: PublishedKeys,
    devices: Sequence[str],
    first: int,
    prev: int | None,
    deleted: bool,
    cross_signing: bool,
) -> None:
    updates: list[dict[str, Any]] = []
    for i, device_id in enumerate(devices):
        stream_id = first + i
        keys = None if deleted else published.devices.get(user_id, {}).get(device_id)
        update: dict[str, Any] = {
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": stream_id,
            # Spec: the updates the receiver should already know; a gap makes it resync.
            "prev_id": [prev] if prev is not None else [],
            "deleted": deleted,
        }
        if keys is not None:
            update["keys"] = keys
        updates.append(update)
        prev = stream_id
    queue_edus(destinations=destinations, edu_type="m.device_list_update", contents=updates)
    if cross_signing:
        signing: dict[str, Any] = {"user_id": user_id}
        if user_id in published.master_keys:
            signing["master_key"] = published.master_keys[user_id]
        if user_id in published.self_signing_keys:
            signing["self_signing_key"] = published.self_signing_keys[user_id]
        queue_edus(destinations=destinations, edu_type="m.signing_key_update", contents=[signing])


def mark_remote_device_list_changed(*, user_id: str, reason: str) -> int:
    """Record that a remote user's devices or cross-signing keys changed (an EDU from their
    server): our users sharing a room with them see it in ``device_lists.changed`` and
    ``/keys/changes``. Nothing is sent on: other servers hear it from the user's own."""
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
                lambda: logger.debug("device_lists %d committed: remote %s (%s)", position, user_id, reason)
            )
    return position


def mark_signed_by(*, signer: str, user_ids: Sequence[str]) -> int:
    """Record that ``signer`` signed these users' master keys: only the signer's devices are
    told (``device_lists.changed``), so they re-query them and see the signature.

    Spec client-server "Cross-signing": a signature by a user-signing key is visible only to
    the user who made it; the client that made it learns that its verification took through
    that query (matrix-sdk-crypto trusts the user once the server serves the signature).
    Nothing goes to other servers: the signature never leaves this one.
    """
    users = sorted(set(user_ids))
    with transaction.atomic():
        rows = [store.insert_change(user_id=u, visible_to=signer) for u in users]
        position = advance_stream("device_lists", by=len(rows)) if rows else 0
        for i, row_id in enumerate(rows):
            store.set_change_stream_id(row_id=row_id, stream_id=position - len(rows) + 1 + i)
        if rows:
            notify(Change(stream="device_lists", position=position, user_ids=(signer,)))
    return position

"""Telling every Tribune process about a committed change (the cross-process half of the notifier).

The message format and the channel-layer group are shared by the publishers
(any process that writes: Tribune, Embassy, Celery workers) and Tribune's
listener, which wakes its ``/sync`` long-polls. Processes without an event loop
of their own (Embassy's sync views, workers, management commands) publish with
:func:`publish_from_thread`. A message may also name cache entries every process must
drop (``dagcore.cache_invalidation.invalidate_everywhere``); receivers hand each message to
``dagcore.cache_invalidation.apply_broadcast_invalidations``.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from dagcore.cache_invalidation import INVALIDATIONS, broadcast_invalidations
from dagcore.notifier import Change, add_listener

logger = logging.getLogger("dagma.broadcast")

GROUP = "dagma.sync"
MESSAGE_TYPE = "dagma.change"


def change_message(change: Change, *, origin: str) -> dict[str, Any]:
    rooms = list(change.extra.get("room_ids", ()) or ())  # type: ignore[call-overload]
    if change.room_id:
        rooms.append(change.room_id)
    message: dict[str, Any] = {
        "type": MESSAGE_TYPE,
        "origin": origin,
        "stream": change.stream,
        "position": change.position,
        "rooms": sorted(set(rooms)),
        "users": sorted(set(change.user_ids)),
    }
    invalidations = broadcast_invalidations(change)
    if invalidations is not None:
        # Cache entries other processes must drop (``dagcore.cache_invalidation.invalidate_everywhere``).
        message[INVALIDATIONS] = invalidations
    return message


def channel_layer() -> Any:
    """The shared channel layer, or None when this process is the only one (in-memory layer)."""

    layer = get_channel_layer()
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return None
    return layer


def publish_from_thread(change: Change, *, origin: str = "noloop") -> None:
    """Publish ``change`` from a thread with no running event loop (waits for the send)."""

    layer = channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(GROUP, change_message(change, origin=origin))
    except Exception:
        logger.exception("could not publish a change for /sync")


def on_start() -> None:
    """Startup hook for processes that write but serve no ``/sync`` (Embassy, workers)."""

    add_listener(publish_from_thread)

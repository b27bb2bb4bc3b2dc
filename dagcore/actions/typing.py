"""Typing notices (spec: client-server API "Typing Notifications").

Only changes of *who is typing* move the ``typing`` stream: a client renewing
its notice (they do every few seconds while the user types) just pushes the
expiry back. Expired notices are cleared by :func:`expire_typing_notices`,
which Tribune runs when the next notice is due (and on a slow sweep, in case
the process that set the timer died).
"""

from __future__ import annotations

from dagcore.actions.room_access import access_joined_room
from dagcore.clock import now_ms
from dagcore.federation.ephemeral import queue_typing
from dagcore.models import Room
from dagcore.notifier import Change, notify
from dagcore.server_keys import get_server_name
from dagcore.store import rooms as room_store
from dagcore.store import transaction
from dagcore.store import typing as store
from dagcore.store.streams import advance_stream

#: When the client gives no timeout (and the longest we honour): as Synapse.
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 120_000


def check_set_typing(*, user_id: str, room_id: str, typing: bool, timeout_ms: int | None) -> None:
    """Only members of the room may type in it (403 otherwise)."""
    room = access_joined_room(user_id=user_id, room_id=room_id)
    do_set_typing(room=room, user_id=user_id, typing=typing, timeout_ms=timeout_ms)
    # Every start, renewal and stop goes to the room's other servers: a renewal is their
    # keep-alive (they time a remote notice out themselves; Synapse after 60 s).
    queue_typing(room=room, user_id=user_id, typing=typing)


def do_set_typing(*, room: Room, user_id: str, typing: bool, timeout_ms: int | None) -> bool:
    """Start or stop; True if who is typing changed (the stream moved)."""
    now = now_ms()
    timeout = min(max(timeout_ms if timeout_ms is not None else DEFAULT_TIMEOUT_MS, 0), MAX_TIMEOUT_MS)
    expires = now + timeout if typing and timeout > 0 else 0
    with transaction.atomic():
        previous = store.lock_typing_expiry(room=room, user_id=user_id)
        was_typing = previous is not None and previous > now
        if previous is None and expires == 0:
            return False
        store.write_typing(room=room, user_id=user_id, expires_ts=expires)
        if was_typing == (expires > 0):
            return False  # a renewal (or a second stop): nobody needs to hear about it
        position = advance_stream("typing")
        store.set_typing_stream_id(room=room, user_id=user_id, stream_id=position)
        notify(
            Change(
                stream="typing",
                position=position,
                room_id=room.room_id,
                user_ids=(user_id,),
                extra={"typing_expires_ts": expires} if expires else {},
            )
        )
    return True


def expire_typing_notices(*, now: int | None = None) -> int:
    """Clear notices that ran out (one stream position for the batch); returns how many."""
    now = now if now is not None else now_ms()
    with transaction.atomic():
        expired = store.claim_expired_typing(now=now)
        if not expired:
            return 0
        position = advance_stream("typing")
        store.set_typing_stream_ids(row_ids=[row_id for row_id, _, _ in expired], stream_id=position)
        for room_id in sorted({room_id for _, room_id, _ in expired}):
            notify(Change(stream="typing", position=position, room_id=room_id))
        # Our users' notices that ran out stop on the other servers now, not at their timeout.
        local = f":{get_server_name()}"
        for _, room_id, user_id in expired:
            room = room_store.get_room(room_id) if user_id.endswith(local) else None
            if room is not None:
                queue_typing(room=room, user_id=user_id, typing=False)
    return len(expired)


def get_next_typing_expiry(*, now: int | None = None) -> int | None:
    """When the next notice runs out (ms), if any is running."""
    return store.get_next_expiry(after=now if now is not None else now_ms())

"""Presence of local users (spec: client-server API "Presence").

A user is online while they sync (``set_presence``) or say so
(``PUT /presence/{userId}/status``); :func:`expire_presence` marks users
offline once they have not synced for ``OFFLINE_AFTER_MS``. Writes are
throttled: a sync of a user already in the asked state only refreshes
``last_sync_ts`` (at most every ``SYNC_TOUCH_MS``) and moves the stream only
when what others see changes (state or status message).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from dagcore.clock import now_ms
from dagcore.federation.ephemeral import queue_presence
from dagcore.http.errors import MatrixError
from dagcore.notifier import Change, notify
from dagcore.server_keys import get_server_name
from dagcore.store import accounts as account_store
from dagcore.store import presence as store
from dagcore.store import transaction
from dagcore.store.presence import PresenceRow
from dagcore.store.streams import advance_stream

STATES = ("online", "unavailable", "offline")
#: "currently_active" holds for this long after the last activity (as Synapse).
ACTIVE_WINDOW_MS = 60_000
#: A user who stopped syncing goes offline after this long.
OFFLINE_AFTER_MS = 90_000
#: Another server's user goes offline here when their server has not said anything of them for
#: this long (Synapse's ``FEDERATION_TIMEOUT``; it repeats an online user's presence every 25 min).
REMOTE_OFFLINE_AFTER_MS = 30 * 60_000
#: Our users online or unavailable have their presence sent again this often (by beat:
#: ``federation-presence-keepalive``) to the servers sharing a room with them, which would
#: otherwise mark them offline after :data:`REMOTE_OFFLINE_AFTER_MS` of silence (Synapse's
#: ``FEDERATION_PING_INTERVAL``: syncing is not activity, so nothing else would be sent).
KEEPALIVE_INTERVAL_MS = 25 * 60_000
#: An online user's syncs refresh ``last_sync_ts`` at most this often.
SYNC_TOUCH_MS = 15_000
MAX_STATUS_MSG = 2048

_KEEP = object()


def presence_enabled() -> bool:
    conf = settings.DAGMA.presence
    return bool(conf.get("enabled", True)) if isinstance(conf, dict) else True


def _publish_presence(user_ids: list[str]) -> None:
    """In the caller's transaction, after writing the users' presence: one new ``presence``
    stream position for all of them, and a wake-up for each one's rooms (after commit)."""
    position = advance_stream("presence")
    store.set_presence_stream_ids(user_ids=user_ids, stream_id=position)
    # Our users' new presence goes to the servers sharing a room with them (latest wins).
    queue_presence(user_ids=user_ids)
    for user_id in user_ids:
        notify(
            Change(
                stream="presence",
                position=position,
                user_ids=(user_id,),
                extra={"room_ids": store.get_joined_room_ids_of(user_id)},
            )
        )


def do_set_presence(
    *, user_id: str, state: str, status_msg: Any = _KEEP, from_sync: bool = False, now: int | None = None
) -> bool:
    """Set the user's presence; True if the stream moved (others will see a change).

    ``from_sync``: the automatic ``set_presence`` of ``/sync``; when nothing others
    see changes it only refreshes ``last_sync_ts`` (throttled), and it keeps the
    status message.
    """
    assert state in STATES
    now = now if now is not None else now_ms()
    with transaction.atomic():
        row = store.lock_presence(user_id)
        new_msg = (row.status_msg if row else None) if status_msg is _KEEP else status_msg
        if row is not None and from_sync and row.state == state and row.status_msg == new_msg:
            # Syncing is not activity (as in Synapse): nothing others see changes, so the
            # stream stays put and nobody is woken; only the offline timer is pushed back.
            if now - row.last_sync_ts >= SYNC_TOUCH_MS:
                store.touch_last_sync(user_id=user_id, ts=now)
            return False
        last_active = now if state == "online" or row is None else row.last_active_ts
        store.write_presence(
            user_id=user_id, state=state, status_msg=new_msg, last_active_ts=last_active, last_sync_ts=now
        )
        _publish_presence([user_id])
    return True


def sync_presence_wanted(set_presence: str | None) -> str | None:
    """The state ``/sync``'s ``set_presence`` asks for: omitted means online; None when there is
    nothing to do (``offline`` leaves presence alone, and so does presence turned off)."""
    if not presence_enabled():
        return None
    wanted = set_presence or "online"
    return None if wanted == "offline" else wanted


def sync_presence_is_current(*, current: tuple[str, int] | None, wanted: str, now: int) -> bool:
    """Whether a sync asking for ``wanted`` would write nothing, given the user's ``(state,
    last_sync_ts)`` as just read: the same state, and the offline timer pushed back recently
    (:func:`do_set_presence`'s ``from_sync`` rule). Lets ``/sync`` skip the locked write."""
    return current is not None and current[0] == wanted and now - current[1] < SYNC_TOUCH_MS


def do_sync_presence(*, user_id: str, set_presence: str | None) -> bool:
    """``/sync``'s ``set_presence``; True if the presence stream moved."""
    wanted = sync_presence_wanted(set_presence)
    if wanted is None:
        return False
    return do_set_presence(user_id=user_id, state=wanted, from_sync=True)


def expire_presence(*, now: int | None = None) -> int:
    """Mark offline the users who stopped syncing; returns how many."""
    now = now if now is not None else now_ms()
    with transaction.atomic():
        users = store.claim_timed_out(
            sync_cutoff=now - OFFLINE_AFTER_MS,
            local_suffix=f":{get_server_name()}",
            remote_cutoff=now - REMOTE_OFFLINE_AFTER_MS,
        )
        if not users:
            return 0
        store.set_offline(user_ids=users)
        _publish_presence(users)
    return len(users)


def do_send_presence_keepalive(*, now: int | None = None) -> int:
    """Beat (every :data:`KEEPALIVE_INTERVAL_MS`): queue the current presence of our users who
    are online or unavailable for the servers sharing a room with them, through the coalescing
    presence outbox (a row still pending for a server is replaced, not doubled). Users past
    their sync timeout are left to :func:`expire_presence`. Returns how many users."""
    if not presence_enabled():
        return 0
    now = now if now is not None else now_ms()
    users = store.get_local_users_present(
        local_suffix=f":{get_server_name()}", synced_after=now - OFFLINE_AFTER_MS
    )
    for start in range(0, len(users), 100):
        with transaction.atomic():
            queue_presence(user_ids=users[start : start + 100])
    return len(users)


def presence_content(row: PresenceRow | None, *, now: int | None = None) -> dict[str, Any]:
    """The ``m.presence`` content / ``GET .../status`` answer for a row (None: offline)."""
    if row is None:
        return {"presence": "offline"}
    now = now if now is not None else now_ms()
    out: dict[str, Any] = {"presence": row.state, "last_active_ago": max(0, now - row.last_active_ts)}
    if row.status_msg is not None:
        out["status_msg"] = row.status_msg
    if row.state == "online":
        out["currently_active"] = now - row.last_active_ts < ACTIVE_WINDOW_MS
    return out


def check_set_presence(*, requester: str, user_id: str, state: object, status_msg: object) -> None:
    """``PUT /presence/{userId}/status``: only your own, a known state, a string status."""
    if requester != user_id:
        raise MatrixError(403, "M_FORBIDDEN", "You can only set your own presence")
    if state not in STATES:
        raise MatrixError(400, "M_INVALID_PARAM", "presence must be one of online, unavailable, offline")
    if status_msg is not None and not isinstance(status_msg, str):
        raise MatrixError(400, "M_INVALID_PARAM", "status_msg must be a string")
    if isinstance(status_msg, str) and len(status_msg) > MAX_STATUS_MSG:
        raise MatrixError(400, "M_INVALID_PARAM", f"status_msg is limited to {MAX_STATUS_MSG} characters")
    if not presence_enabled():
        return  # accepted and ignored, as Synapse does with presence off
    assert isinstance(state, str)
    do_set_presence(user_id=user_id, state=state, status_msg=status_msg)


def access_presence(*, requester: str, user_id: str) -> dict[str, Any]:
    """``GET /presence/{userId}/status``: yours, or of a user you share a room with (another
    server's user too: what their server last told us, see :func:`do_set_remote_presence`)."""
    if user_id != requester:
        local = user_id.partition(":")[2] == get_server_name()
        if local and account_store.get_user(user_id) is None:
            raise MatrixError(404, "M_NOT_FOUND", "No presence for this user")
        if not store.users_share_a_room(requester, user_id):
            raise MatrixError(403, "M_FORBIDDEN", "You are not allowed to see their presence")
    if not presence_enabled():
        return {"presence": "offline"}
    return presence_content(store.get_presence(user_id))


def do_set_remote_presence(
    *, user_id: str, state: str, status_msg: str | None, last_active_ts: int, now: int | None = None
) -> bool:
    """Another server's user's presence as their server reports it (``m.presence``); True if what
    our users see changed. ``last_sync_ts`` becomes when we heard it (their timeout:
    :data:`REMOTE_OFFLINE_AFTER_MS`)."""
    assert state in STATES
    now = now if now is not None else now_ms()
    with transaction.atomic():
        row = store.lock_presence(user_id)
        unchanged = (
            row is not None
            and row.state == state
            and row.status_msg == status_msg
            and abs(row.last_active_ts - last_active_ts) < ACTIVE_WINDOW_MS
        )
        store.write_presence(
            user_id=user_id,
            state=state,
            status_msg=status_msg,
            last_active_ts=last_active_ts,
            last_sync_ts=now,
        )
        if unchanged and row is not None:
            # A keep-alive: the offline timer moves, the stream does not (nobody is woken).
            store.set_presence_stream_ids(user_ids=[user_id], stream_id=row.stream_id)
            return False
        _publish_presence([user_id])
    return True

"""Typing notices, read receipts and presence from other servers (inbound EDUs).

Spec: server-server API "Typing Notifications" (``m.typing``), "Receipts"
(``m.receipt``) and "Presence" (``m.presence``). Issue 11: an EDU is only about
the origin's own users, in rooms the origin shares with us (it has a joined member),
and about users joined to those rooms; the room's server ACL must allow the origin
(spec "Server Access Control Lists"). Anything else is dropped — never an error for
the transaction. What passes goes into the same tables and streams as our users'
(``actions.typing``, ``actions.receipts``, ``actions.presence``), so our users'
``/sync`` shows it as it shows local ones.

Each handler returns an outcome for the transaction's counts: ``applied`` (something
changed), ``unchanged``, or ``dropped`` (nothing of it was acceptable).
"""

from __future__ import annotations

import logging
from typing import Any

from dagcore.actions.presence import MAX_STATUS_MSG, STATES, do_set_remote_presence, presence_enabled
from dagcore.actions.receipts import do_set_receipt
from dagcore.actions.server_acl import AclCache
from dagcore.actions.typing import do_set_typing
from dagcore.clock import now_ms
from dagcore.models import Room
from dagcore.protocol.identifiers import parse_user_id
from dagcore.store import presence as presence_store
from dagcore.store import rooms as room_store
from dagcore.store import timeline
from dagcore.store.events import StoredEvent

logger = logging.getLogger("dagma.federation.edus")

#: How long a remote typing notice lasts unless renewed: Synapse's ``FEDERATION_TIMEOUT`` (it
#: repeats a notice every 40 s while its user types, and sends ``typing: false`` on a stop).
REMOTE_TYPING_TIMEOUT_MS = 60_000
#: Receipt types another server may send us: private receipts never leave their server.
FEDERATED_RECEIPT_TYPES = ("m.read",)
#: Bounds on one EDU's work (a transaction holds at most 100 EDUs of at most 64 KiB).
MAX_RECEIPT_ROOMS = 50
MAX_RECEIPTS_PER_EDU = 200
MAX_EVENT_IDS = 10
MAX_PRESENCE_PER_EDU = 200


def _origins_user(origin: str, user_id: object) -> str | None:
    """``user_id`` if it is a valid user ID of ``origin``, else None (the entry is dropped)."""
    if not isinstance(user_id, str):
        return None
    try:
        _, server = parse_user_id(user_id)
    except ValueError:
        return None
    return user_id if server == origin else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class _Rooms:
    """The rooms of one transaction's EDUs that the origin shares with us and may act in."""

    def __init__(self, origin: str, acl: AclCache) -> None:
        self.origin = origin
        self.acl = acl
        self._rooms: dict[str, Room | None] = {}

    def shared(self, room_id: object) -> Room | None:
        if not isinstance(room_id, str) or len(room_id) > 255:
            return None
        if room_id not in self._rooms:
            room = room_store.get_room(room_id)
            if room is not None and (
                self.origin not in room_store.get_joined_servers(room)
                or not self.acl.allows(room, self.origin)
            ):
                room = None
            self._rooms[room_id] = room
        return self._rooms[room_id]


def _joined(room: Room, user_id: str) -> bool:
    membership = room_store.get_membership(room, user_id)
    return membership is not None and membership.membership == "join"


def do_receive_typing(*, origin: str, content: Any, acl: AclCache | None = None) -> str:
    """One ``m.typing``: ``{"room_id", "user_id", "typing"}``."""
    if not isinstance(content, dict) or not isinstance(content.get("typing"), bool):
        return "dropped"
    user_id = _origins_user(origin, content.get("user_id"))
    room = _Rooms(origin, acl or AclCache()).shared(content.get("room_id"))
    if user_id is None or room is None or not _joined(room, user_id):
        return "dropped"
    changed = do_set_typing(
        room=room, user_id=user_id, typing=content["typing"], timeout_ms=REMOTE_TYPING_TIMEOUT_MS
    )
    return "applied" if changed else "unchanged"


def _latest_known_event(room: Room, event_ids: list[Any]) -> StoredEvent | None:
    """Of the receipted events, the latest one we hold in the room (receipts only move forward)."""
    best: StoredEvent | None = None
    for event_id in event_ids[:MAX_EVENT_IDS]:
        if not isinstance(event_id, str) or len(event_id) > 255:
            continue
        stored = timeline.get_room_event(room, event_id)
        if stored is None or stored.stream_ordering is None:
            continue
        if best is None or (best.stream_ordering or 0) < stored.stream_ordering:
            best = stored
    return best


def _thread_id(data: dict[str, Any]) -> str | None:
    """The receipt's thread: "" (unthreaded), "main" or a thread root's event ID; None if invalid."""
    thread = data.get("thread_id")
    if thread is None:
        return ""
    if isinstance(thread, str) and (thread == "main" or (thread.startswith("$") and len(thread) <= 255)):
        return thread
    return None


def do_receive_receipt(*, origin: str, content: Any, acl: AclCache | None = None) -> str:
    """One ``m.receipt``: ``{room_id: {"m.read": {user_id: {"event_ids": [...], "data": {"ts"}}}}}``.
    Each (room, user) entry is judged on its own; the outcome is the best of them."""
    if not isinstance(content, dict):
        return "dropped"
    rooms = _Rooms(origin, acl or AclCache())
    applied = unchanged = 0
    seen = 0
    for room_id, by_type in list(content.items())[:MAX_RECEIPT_ROOMS]:
        room = rooms.shared(room_id)
        if room is None or not isinstance(by_type, dict):
            continue
        for receipt_type, by_user in by_type.items():
            if receipt_type not in FEDERATED_RECEIPT_TYPES or not isinstance(by_user, dict):
                continue
            for raw_user, receipt in by_user.items():
                seen += 1
                if seen > MAX_RECEIPTS_PER_EDU:
                    break
                user_id = _origins_user(origin, raw_user)
                if user_id is None or not isinstance(receipt, dict) or not _joined(room, user_id):
                    continue
                event_ids = receipt.get("event_ids")
                data = receipt.get("data", {})
                if not isinstance(event_ids, list) or not isinstance(data, dict):
                    continue
                thread_id = _thread_id(data)
                event = _latest_known_event(room, event_ids)
                if thread_id is None or event is None:
                    continue
                ts = _int(data.get("ts"))
                moved = do_set_receipt(
                    user_id=user_id,
                    room=room,
                    receipt_type=receipt_type,
                    event=event,
                    thread_id=thread_id,
                    ts=ts if ts is not None else now_ms(),
                )
                if moved:
                    applied += 1
                else:
                    unchanged += 1
    if applied:
        return "applied"
    return "unchanged" if unchanged else "dropped"


def _shares_allowed_room(origin: str, user_id: str, acl: AclCache) -> bool:
    """Whether the user is joined to a room one of our users is joined to, whose ACL allows the origin."""
    return any(acl.allows(room, origin) for room in presence_store.get_rooms_shared_with_local_users(user_id))


def do_receive_presence(*, origin: str, content: Any, acl: AclCache | None = None) -> str:
    """One ``m.presence``: ``{"push": [{"user_id", "presence", "last_active_ago", "status_msg"?,
    "currently_active"?}]}``; each update is judged on its own."""
    if not isinstance(content, dict) or not isinstance(content.get("push"), list):
        return "dropped"
    if not presence_enabled():
        return "unchanged"  # presence is off here: accepted and ignored, as Synapse does
    acl = acl or AclCache()
    now = now_ms()
    applied = unchanged = 0
    for update in content["push"][:MAX_PRESENCE_PER_EDU]:
        if not isinstance(update, dict):
            continue
        user_id = _origins_user(origin, update.get("user_id"))
        state = update.get("presence")
        ago = _int(update.get("last_active_ago", 0))
        status_msg = update.get("status_msg")
        if (
            user_id is None
            or state not in STATES
            or ago is None
            or (status_msg is not None and not isinstance(status_msg, str))
            or (isinstance(status_msg, str) and len(status_msg) > MAX_STATUS_MSG)
        ):
            continue
        if not _shares_allowed_room(origin, user_id, acl):
            continue
        assert isinstance(state, str)
        changed = do_set_remote_presence(
            user_id=user_id, state=state, status_msg=status_msg, last_active_ts=max(0, now - ago), now=now
        )
        if changed:
            applied += 1
        else:
            unchanged += 1
    if applied:
        return "applied"
    return "unchanged" if unchanged else "dropped"

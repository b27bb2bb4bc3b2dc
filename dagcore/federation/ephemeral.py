"""Typing notices, read receipts and presence of our users, to the servers that share them.

Spec: server-server API "Typing Notifications" (``m.typing``), "Receipts"
(``m.receipt``) and "Presence" (``m.presence``). Issue 11: "typing is sent and
expires, never queued across an outage"; "receipts and presence coalesce (the
latest wins)". So none of them is a durable outbox row: each update replaces the
destination's previous one of the same thing (``federation_outbox_ephemeral``,
written in the change's transaction), the destination's next transaction carries
it (:func:`build_ephemeral_edus`, called by the sender), and a typing notice not
sent within :data:`TYPING_SEND_WINDOW_MS` is dropped. Receipts and presence wait
out an outage, only the latest of each.

Destinations: the servers with joined members in the room (typing, receipts); for
presence, the servers sharing any room with the user (Synapse's
``get_interested_remotes``). Rooms created with ``m.federate: false`` stay local.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings

from dagcore.clock import now_ms
from dagcore.federation.outbox import SEND_TASK, room_federates, sends_in_this_process
from dagcore.models import Room
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.server_keys import get_server_name
from dagcore.store import outbox as outbox_store
from dagcore.store import presence as presence_store
from dagcore.store import rooms as room_store
from dagcore.taskqueue.dispatch import enqueue

#: A typing notice not sent within this time is dropped (a notice that late would mislead:
#: the receiver times typing out after 30-60 s anyway, Synapse after 60 s).
TYPING_SEND_WINDOW_MS = 20_000
#: Ephemeral rows per transaction (each typing row is an EDU; receipts merge into one EDU and
#: presence into one per :data:`PRESENCE_PER_EDU`), leaving the rest of the 100 EDUs to durable ones.
MAX_EPHEMERAL_ROWS_PER_TXN = 50
#: Presence updates per ``m.presence`` EDU (each may carry a 2 KiB status message; an EDU
#: stays under the spec's 64 KiB).
PRESENCE_PER_EDU = 20

#: "currently_active": active within this long (``dagcore.actions.presence.ACTIVE_WINDOW_MS``;
#: not imported: the actions import this module).
ACTIVE_WINDOW_MS = 60_000

TYPING = "m.typing"
RECEIPT = "m.receipt"
PRESENCE = "m.presence"


def _federating() -> bool:
    return bool(settings.DAGMA.federation_enabled)


def _room_destinations(room: Room) -> list[str]:
    if not room_federates.get(room.room_id, room.pk):
        return []
    ours = get_server_name()
    return sorted(s for s in room_store.get_joined_servers(room) if s and s != ours)


def _queue(
    *, destinations: Sequence[str], edu_type: str, key: str, content: dict[str, Any], expires: int
) -> None:
    """Upsert the rows in the caller's transaction; the senders are nudged after it commits."""
    if not destinations:
        return
    outbox_store.upsert_ephemeral_edus(
        destinations=destinations,
        edu_type=edu_type,
        key=key,
        content=encode_canonical_json(content).decode(),
        revision=secrets.randbits(62),
        expires_ts=expires,
        now=now_ms(),
    )
    if sends_in_this_process():
        for destination in destinations:
            enqueue(SEND_TASK, destination)


def queue_typing(*, room: Room, user_id: str, typing: bool) -> None:
    """Our user started (or renewed) or stopped typing in the room."""
    if not _federating():
        return
    _queue(
        destinations=_room_destinations(room),
        edu_type=TYPING,
        key=f"{room.room_id}\n{user_id}",
        content={"room_id": room.room_id, "user_id": user_id, "typing": typing},
        expires=now_ms() + TYPING_SEND_WINDOW_MS,
    )


def queue_receipt(
    *, room: Room, user_id: str, receipt_type: str, event_id: str, thread_id: str, ts: int
) -> None:
    """Our user's public receipt moved (``m.read.private`` never leaves the server)."""
    if not _federating():
        return
    data: dict[str, Any] = {"ts": ts}
    if thread_id:
        data["thread_id"] = thread_id
    _queue(
        destinations=_room_destinations(room),
        edu_type=RECEIPT,
        key=f"{room.room_id}\n{user_id}\n{receipt_type}\n{thread_id}",
        content={
            "room_id": room.room_id,
            "receipt_type": receipt_type,
            "user_id": user_id,
            "event_ids": [event_id],
            "data": data,
        },
        expires=0,
    )


def queue_presence(*, user_ids: Iterable[str]) -> None:
    """Our users' presence changed: their current presence to every server sharing a room."""
    if not _federating():
        return
    ours = get_server_name()
    suffix = f":{ours}"
    for user_id in user_ids:
        if not user_id.endswith(suffix):
            continue
        row = presence_store.get_presence(user_id)
        if row is None:
            continue
        destinations = sorted(
            s for s in presence_store.get_servers_sharing_a_room(user_id) if s and s != ours
        )
        content: dict[str, Any] = {
            "user_id": user_id,
            "presence": row.state,
            "last_active_ts": row.last_active_ts,
        }
        if row.status_msg is not None:
            content["status_msg"] = row.status_msg
        _queue(destinations=destinations, edu_type=PRESENCE, key=user_id, content=content, expires=0)


# --------------------------------------------------------------------------- the sender's side


def count_ephemeral_edus(rows: Sequence[tuple[int, int, str, str]]) -> int:
    """How many EDUs :func:`build_ephemeral_edus` makes of these rows."""
    typing = sum(1 for r in rows if r[2] == TYPING)
    receipts = 1 if any(r[2] == RECEIPT for r in rows) else 0
    presence = sum(1 for r in rows if r[2] == PRESENCE)
    return typing + receipts + -(-presence // PRESENCE_PER_EDU)


def build_ephemeral_edus(rows: Sequence[tuple[int, int, str, str]], *, now: int) -> list[dict[str, Any]]:
    """The EDUs of a transaction's ephemeral rows: one ``m.typing`` per row, the receipts merged
    into one ``m.receipt``, presence in ``m.presence`` batches (``last_active_ago`` as of ``now``)."""
    edus: list[dict[str, Any]] = []
    receipts: dict[str, dict[str, dict[str, Any]]] = {}
    presence: list[dict[str, Any]] = []
    for _, _, edu_type, raw in rows:
        content = json.loads(raw)
        if edu_type == TYPING:
            edus.append({"edu_type": TYPING, "content": content})
        elif edu_type == RECEIPT:
            by_type = receipts.setdefault(content["room_id"], {}).setdefault(content["receipt_type"], {})
            by_type[content["user_id"]] = {"event_ids": content["event_ids"], "data": content["data"]}
        elif edu_type == PRESENCE:
            ago = max(0, now - int(content.pop("last_active_ts")))
            entry = {**content, "last_active_ago": ago}
            if content["presence"] == "online":
                entry["currently_active"] = ago < ACTIVE_WINDOW_MS
            presence.append(entry)
    if receipts:
        edus.append({"edu_type": RECEIPT, "content": receipts})
    for start in range(0, len(presence), PRESENCE_PER_EDU):
        edus.append({"edu_type": PRESENCE, "content": {"push": presence[start : start + PRESENCE_PER_EDU]}})
    return edus

"""Read receipts and read markers (spec: client-server API "Receipts" and "Fully read markers").

``m.read`` and ``m.read.private`` receipts are rows of the ``receipts`` stream
(private ones are only ever shown to their owner); ``m.fully_read`` is the
room's account data, managed by the server. Receipts and markers only move
forward: pointing one at an older event changes nothing (as in Synapse, so a
slow client cannot undo what another device read).
"""

from __future__ import annotations

from dagcore.actions.account_data import do_set_account_data
from dagcore.actions.room_access import access_joined_room
from dagcore.clock import now_ms
from dagcore.federation.ephemeral import queue_receipt
from dagcore.http.errors import MatrixError
from dagcore.models import Room
from dagcore.notifier import Change, notify
from dagcore.server_keys import get_server_name
from dagcore.store import account_data as account_data_store
from dagcore.store import receipts as store
from dagcore.store import timeline, transaction
from dagcore.store.events import StoredEvent
from dagcore.store.streams import advance_stream

RECEIPT_TYPES = ("m.read", "m.read.private")
FULLY_READ = "m.fully_read"
MAIN_THREAD = "main"


def _room_event(room: Room, event_id: str) -> StoredEvent:
    stored = timeline.get_room_event(room, event_id)
    if stored is None or stored.stream_ordering is None:
        raise MatrixError(404, "M_NOT_FOUND", "Event not found in this room")
    return stored


def _check_thread(stored: StoredEvent, thread_id: str | None) -> str:
    """Spec "Threaded read receipts": ``main``, or the root of the thread the event is in."""
    if thread_id is None:
        return ""
    if not thread_id:
        raise MatrixError(400, "M_INVALID_PARAM", "thread_id field must be a non-empty string")
    if thread_id == MAIN_THREAD:
        return thread_id
    if not thread_id.startswith("$"):
        raise MatrixError(400, "M_INVALID_PARAM", "thread_id must be 'main' or a thread root's event ID")
    in_thread = stored.event_id == thread_id or (
        stored.event.content.get("m.relates_to", {}).get("rel_type") == "m.thread"
        and stored.event.content.get("m.relates_to", {}).get("event_id") == thread_id
    )
    if not in_thread:
        raise MatrixError(400, "M_INVALID_PARAM", "The event is not in that thread")
    return thread_id


def check_set_receipt(
    *, user_id: str, room_id: str, receipt_type: str, event_id: str, thread_id: str | None
) -> None:
    """``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}``: the user must be joined."""
    if receipt_type not in (*RECEIPT_TYPES, FULLY_READ):
        raise MatrixError(
            400, "M_INVALID_PARAM", f"Receipt type must be one of {', '.join((*RECEIPT_TYPES, FULLY_READ))}"
        )
    if receipt_type == FULLY_READ and thread_id is not None:
        raise MatrixError(400, "M_INVALID_PARAM", "thread_id is not allowed for m.fully_read")
    room = access_joined_room(user_id=user_id, room_id=room_id)
    stored = _room_event(room, event_id)
    if receipt_type == FULLY_READ:
        do_set_fully_read(user_id=user_id, room=room, event=stored)
        return
    do_set_receipt(
        user_id=user_id,
        room=room,
        receipt_type=receipt_type,
        event=stored,
        thread_id=_check_thread(stored, thread_id),
    )


def do_set_receipt(
    *, user_id: str, room: Room, receipt_type: str, event: StoredEvent, thread_id: str, ts: int | None = None
) -> bool:
    """Move the receipt to ``event`` if that is forward; True if it moved. ``ts``: when it was
    made (a remote receipt's own ``data.ts``), else now. Our users' public receipts go to the
    room's other servers (the latest per user, type and thread: ``queue_receipt``)."""
    assert event.stream_ordering is not None
    with transaction.atomic():
        current = store.get_receipt_position(
            room=room, user_id=user_id, receipt_type=receipt_type, thread_id=thread_id
        )
        if current is not None and current >= event.stream_ordering:
            return False
        store.upsert_receipt(
            room=room,
            user_id=user_id,
            receipt_type=receipt_type,
            thread_id=thread_id,
            event_id=event.event_id,
            event_stream_ordering=event.stream_ordering,
            ts=ts if ts is not None else now_ms(),
        )
        position = advance_stream("receipts")
        store.set_receipt_stream_id(
            room=room, user_id=user_id, receipt_type=receipt_type, thread_id=thread_id, stream_id=position
        )
        private = receipt_type in store.PRIVATE_TYPES
        if not private and user_id.endswith(f":{get_server_name()}"):
            queue_receipt(
                room=room,
                user_id=user_id,
                receipt_type=receipt_type,
                event_id=event.event_id,
                thread_id=thread_id,
                ts=ts if ts is not None else now_ms(),
            )
        notify(
            Change(
                stream="receipts",
                position=position,
                # A private receipt only concerns its owner's devices.
                room_id=None if private else room.room_id,
                user_ids=(user_id,),
            )
        )
    return True


def do_set_fully_read(*, user_id: str, room: Room, event: StoredEvent) -> bool:
    """The ``m.fully_read`` room account data, moved forward only."""
    current = account_data_store.get_account_data(user_id=user_id, room_id=room.room_id, data_type=FULLY_READ)
    if current and isinstance(current.get("event_id"), str):
        previous = timeline.get_room_event(room, current["event_id"])
        if previous is not None and (previous.stream_ordering or 0) >= (event.stream_ordering or 0):
            return False
    do_set_account_data(
        user_id=user_id, room_id=room.room_id, data_type=FULLY_READ, content={"event_id": event.event_id}
    )
    return True


def check_set_read_markers(
    *, user_id: str, room_id: str, fully_read: str | None, read: str | None, read_private: str | None
) -> None:
    """``POST /rooms/{roomId}/read_markers``: any of the three, each optional."""
    room = access_joined_room(user_id=user_id, room_id=room_id)
    events = {
        key: _room_event(room, eid)
        for key, eid in (("f", fully_read), ("r", read), ("p", read_private))
        if eid
    }
    if "f" in events:
        do_set_fully_read(user_id=user_id, room=room, event=events["f"])
    if "r" in events:
        do_set_receipt(user_id=user_id, room=room, receipt_type="m.read", event=events["r"], thread_id="")
    if "p" in events:
        do_set_receipt(
            user_id=user_id, room=room, receipt_type="m.read.private", event=events["p"], thread_id=""
        )

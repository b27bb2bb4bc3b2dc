"""Read receipts and their stream (spec: client-server API "Receipts")."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from dagcore.models import Receipt, Room
from dagcore.store.sql import fetch_rows, in_list

#: Receipt types only their owner may see.
PRIVATE_TYPES = ("m.read.private",)
READ_TYPES = ("m.read", "m.read.private")


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    room_id: str
    user_id: str
    receipt_type: str
    thread_id: str
    event_id: str
    event_stream_ordering: int
    ts: int
    stream_id: int


_FIELDS = (
    "room__room_id",
    "user_id",
    "receipt_type",
    "thread_id",
    "event_id",
    "event_stream_ordering",
    "ts",
    "stream_id",
)


def _rows(qs: Iterable[tuple[str, str, str, str, str, int, int, int]]) -> list[ReceiptRow]:
    return [ReceiptRow(*row) for row in qs]


def get_receipt_position(*, room: Room, user_id: str, receipt_type: str, thread_id: str) -> int | None:
    """Stream ordering of the event the user's receipt points at, if any."""
    value = (
        Receipt.objects.filter(room=room, user_id=user_id, receipt_type=receipt_type, thread_id=thread_id)
        .values_list("event_stream_ordering", flat=True)
        .first()
    )
    return int(value) if value is not None else None


def upsert_receipt(
    *,
    room: Room,
    user_id: str,
    receipt_type: str,
    thread_id: str,
    event_id: str,
    event_stream_ordering: int,
    ts: int,
) -> None:
    """Point the receipt at the event, with a pending stream position (set after ``advance_stream``)."""
    fields = {"event_id": event_id, "event_stream_ordering": event_stream_ordering, "ts": ts, "stream_id": -1}
    key = {"room": room, "user_id": user_id, "receipt_type": receipt_type, "thread_id": thread_id}
    if Receipt.objects.filter(**key).update(**fields):
        return
    try:
        with transaction.atomic():
            Receipt.objects.create(**key, **fields)
    except IntegrityError:
        Receipt.objects.filter(**key).update(**fields)


def set_receipt_stream_id(
    *, room: Room, user_id: str, receipt_type: str, thread_id: str, stream_id: int
) -> None:
    Receipt.objects.filter(room=room, user_id=user_id, receipt_type=receipt_type, thread_id=thread_id).update(
        stream_id=stream_id
    )


def get_receipts_for_rooms(
    *, room_nids: Sequence[int], viewer: str, after: int | None = None, upto: int | None = None
) -> list[ReceiptRow]:
    """Receipts in these rooms the viewer may see, changed in ``(after, upto]`` (all when ``after`` is None)."""
    if not room_nids:
        return []
    params: list[Any] = []
    rooms_cond = in_list("x.room_id", list(room_nids), params)
    private_cond = in_list("x.receipt_type", PRIVATE_TYPES, params)
    params.append(viewer)
    sql = (
        "SELECT r.room_id, x.user_id, x.receipt_type, x.thread_id, x.event_id, x.event_stream_ordering, x.ts, "
        f"x.stream_id FROM receipts x JOIN rooms r ON r.id = x.room_id WHERE {rooms_cond} "
        f"AND (NOT {private_cond} OR x.user_id = %s)"
    )
    if after is not None:
        sql += " AND x.stream_id > %s"
        params.append(after)
    if upto is not None:
        sql += " AND x.stream_id <= %s"
        params.append(upto)
    # Raw SQL: every sync after any receipt in the user's rooms asks this.
    return _rows(fetch_rows(sql, params))


def get_read_positions(*, user_id: str, room_nids: Sequence[int]) -> dict[int, int]:
    """Per room, the stream ordering the user has read up to (``m.read`` or ``m.read.private``,
    whichever is further: spec "Receiving notifications"), counting unthreaded and ``main`` receipts."""
    if not room_nids:
        return {}
    out: dict[int, int] = {}
    for room_nid, pos in Receipt.objects.filter(
        user_id=user_id, room_id__in=list(room_nids), receipt_type__in=READ_TYPES, thread_id__in=("", "main")
    ).values_list("room_id", "event_stream_ordering"):
        out[room_nid] = max(out.get(room_nid, 0), int(pos))
    return out

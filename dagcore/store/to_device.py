"""The to-device inbox: messages per device, in stream order, kept until acknowledged."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dagcore.models import Device, ReceivedToDeviceMessage, ToDeviceMessage
from dagcore.protocol.canonical_json import encode_canonical_json


@dataclass(frozen=True, slots=True)
class InboxMessage:
    stream_id: int
    sender: str
    type: str
    content: dict[str, Any]


def get_device_ids(user_ids: Iterable[str]) -> dict[str, list[str]]:
    """Device IDs of these local users (one query)."""
    out: dict[str, list[str]] = {}
    for user_id, device_id in Device.objects.filter(user__user_id__in=list(set(user_ids))).values_list(
        "user__user_id", "device_id"
    ):
        out.setdefault(user_id, []).append(device_id)
    return out


def insert_messages(
    *, sender: str, event_type: str, messages: Sequence[tuple[str, str, dict[str, Any]]], first_stream_id: int
) -> None:
    """Store ``(user_id, device_id, content)`` messages at consecutive positions from ``first_stream_id``.

    One position per message, so a sync that delivers only part of the inbox can
    acknowledge exactly what it delivered.
    """
    ToDeviceMessage.objects.bulk_create(
        [
            ToDeviceMessage(
                user_id=user_id,
                device_id=device_id,
                stream_id=first_stream_id + i,
                sender=sender,
                type=event_type,
                content=encode_canonical_json(content).decode(),
            )
            for i, (user_id, device_id, content) in enumerate(messages)
        ],
        batch_size=1000,
    )


def get_messages(*, user_id: str, device_id: str, after: int, upto: int, limit: int) -> list[InboxMessage]:
    rows = (
        ToDeviceMessage.objects.filter(
            user_id=user_id, device_id=device_id, stream_id__gt=after, stream_id__lte=upto
        )
        .order_by("stream_id", "id")
        .values_list("stream_id", "sender", "type", "content")[:limit]
    )
    return [InboxMessage(int(s), sender, t, json.loads(c)) for s, sender, t, c in rows]


def delete_messages_upto(*, user_id: str, device_id: str, upto: int) -> int:
    deleted, _ = ToDeviceMessage.objects.filter(
        user_id=user_id, device_id=device_id, stream_id__lte=upto
    ).delete()
    return deleted


def delete_device_messages(*, user_id: str, device_ids: Sequence[str]) -> int:
    """For device deletion: a deleted device's inbox goes with it."""
    deleted, _ = ToDeviceMessage.objects.filter(user_id=user_id, device_id__in=list(device_ids)).delete()
    return deleted


def record_received_message_id(*, origin: str, message_id: str, now: int) -> bool:
    """Remember an ``m.direct_to_device`` EDU's ID; False if it was delivered before
    (a concurrent insert of the same ID loses the unique constraint and reads it back)."""
    _, created = ReceivedToDeviceMessage.objects.get_or_create(
        origin=origin, message_id=message_id, defaults={"received_ts": now}
    )
    return bool(created)


def delete_received_message_ids_before(*, before_ts: int, batch: int = 10_000) -> int:
    """Forget ``m.direct_to_device`` IDs received before ``before_ts``, a batch per statement
    (short transactions; the ``received_ts`` index finds them)."""
    deleted = 0
    while True:
        ids = list(
            ReceivedToDeviceMessage.objects.filter(received_ts__lt=before_ts).values_list("id", flat=True)[
                :batch
            ]
        )
        if not ids:
            return deleted
        deleted += ReceivedToDeviceMessage.objects.filter(id__in=ids).delete()[0]

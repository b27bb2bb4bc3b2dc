"""Account data (global and per room, incl. ``m.tag`` and ``m.fully_read``) and its stream."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from dagcore.models import AccountData
from dagcore.protocol.canonical_json import encode_canonical_json

GLOBAL = ""
#: Type of the marker row whose stream position says "the push rules changed".
PUSH_RULES_TYPE = "m.push_rules"


@dataclass(frozen=True, slots=True)
class AccountDataEntry:
    room_id: str  # "" for global
    type: str
    content: dict[str, Any]
    stream_id: int


def _encode(content: dict[str, Any]) -> str:
    return encode_canonical_json(content).decode()


def get_account_data(*, user_id: str, room_id: str, data_type: str) -> dict[str, Any] | None:
    raw = (
        AccountData.objects.filter(user_id=user_id, room_id=room_id, type=data_type)
        .values_list("content", flat=True)
        .first()
    )
    return json.loads(raw) if raw is not None else None


def get_account_data_entries(
    *,
    user_id: str,
    after: int | None = None,
    upto: int | None = None,
    room_ids: Iterable[str] | None = None,
    include_global: bool = True,
) -> list[AccountDataEntry]:
    """The user's entries changed in ``(after, upto]`` (all of them when ``after`` is None): one query.

    ``room_ids`` limits the per-room entries to those rooms.
    """
    qs = AccountData.objects.filter(user_id=user_id)
    if after is not None:
        qs = qs.filter(stream_id__gt=after)
    if upto is not None:
        qs = qs.filter(stream_id__lte=upto)
    rows = qs.values_list("room_id", "type", "content", "stream_id").order_by("stream_id")
    rooms = set(room_ids) if room_ids is not None else None
    out: list[AccountDataEntry] = []
    for room_id, data_type, content, stream_id in rows:
        if room_id == GLOBAL:
            if not include_global:
                continue
        elif rooms is not None and room_id not in rooms:
            continue
        out.append(AccountDataEntry(room_id, data_type, json.loads(content), int(stream_id)))
    return out


def get_account_data_stream_id(*, user_id: str, room_id: str, data_type: str) -> int:
    value = (
        AccountData.objects.filter(user_id=user_id, room_id=room_id, type=data_type)
        .values_list("stream_id", flat=True)
        .first()
    )
    return int(value or 0)


def lock_account_data(*, user_id: str, room_id: str, data_type: str) -> dict[str, Any] | None:
    """The entry's content, row-locked until the transaction ends (read-modify-write of tags)."""
    raw = (
        AccountData.objects.select_for_update()
        .filter(user_id=user_id, room_id=room_id, type=data_type)
        .values_list("content", flat=True)
        .first()
    )
    return json.loads(raw) if raw is not None else None


def write_account_data(*, user_id: str, room_id: str, data_type: str, content: dict[str, Any]) -> None:
    """Insert or replace an entry with a pending stream position (see ``set_account_data_stream_id``)."""
    encoded = _encode(content)
    updated = AccountData.objects.filter(user_id=user_id, room_id=room_id, type=data_type).update(
        content=encoded, stream_id=-1
    )
    if updated:
        return
    try:
        with transaction.atomic():
            AccountData.objects.create(
                user_id=user_id, room_id=room_id, type=data_type, content=encoded, stream_id=-1
            )
    except IntegrityError:
        # Created concurrently: ours is the later write.
        AccountData.objects.filter(user_id=user_id, room_id=room_id, type=data_type).update(
            content=encoded, stream_id=-1
        )


def set_account_data_stream_id(*, user_id: str, room_id: str, data_type: str, stream_id: int) -> None:
    AccountData.objects.filter(user_id=user_id, room_id=room_id, type=data_type).update(stream_id=stream_id)

"""Stored sync filters (``POST /user/{userId}/filter``)."""

from __future__ import annotations

import json
from typing import Any

from dagcore.clock import now_ms
from dagcore.models import UserFilter
from dagcore.protocol.canonical_json import encode_canonical_json


def insert_filter(*, user_id: str, definition: dict[str, Any]) -> int:
    row = UserFilter.objects.create(
        user_id=user_id, definition=encode_canonical_json(definition).decode(), created_ts=now_ms()
    )
    return int(row.id)


def get_filter(*, user_id: str, filter_id: int) -> dict[str, Any] | None:
    raw = (
        UserFilter.objects.filter(id=filter_id, user_id=user_id).values_list("definition", flat=True).first()
    )
    return json.loads(raw) if raw is not None else None

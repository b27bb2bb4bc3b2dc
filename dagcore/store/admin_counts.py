"""Counts behind a few of Synapse's admin API answers (per-user activity since a time)."""

from __future__ import annotations

import json
from typing import Any

from dagcore.models import Event


def member_events_since(
    *, sender: str | None = None, state_key: str | None = None, since_ts: int
) -> list[dict[str, Any]]:
    """Content and room of ``m.room.member`` events (accepted, not outliers) since ``since_ts``,
    by ``sender`` and/or about ``state_key``."""
    qs = Event.objects.filter(type="m.room.member", origin_server_ts__gte=since_ts, outlier=False,
                              rejected_reason__isnull=True)  # fmt: skip
    if sender is not None:
        qs = qs.filter(sender=sender)
    if state_key is not None:
        qs = qs.filter(state_key=state_key)
    out = []
    for room_id, sender_, key, raw in qs.values_list("room__room_id", "sender", "state_key", "json"):
        content = json.loads(raw).get("content")
        membership = content.get("membership") if isinstance(content, dict) else None
        out.append({"room_id": room_id, "sender": sender_, "state_key": key, "membership": membership})
    return out

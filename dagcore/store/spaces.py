"""What the space hierarchy reads: rooms by ID and their ``m.space.child`` state."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from dagcore.models import CurrentStateEvent, Room
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import get_room_version


def get_room_nids(room_ids: Iterable[str]) -> dict[str, int]:
    """``room ID -> room nid`` of the rooms this server knows (one query)."""
    ids = list(set(room_ids))
    if not ids:
        return {}
    return dict(Room.objects.filter(room_id__in=ids).values_list("room_id", "id"))


def get_space_children(room_nids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """Per room, its current ``m.space.child`` events as PDUs (redacted ones redacted): one query."""
    nids = list(set(room_nids))
    out: dict[int, list[dict[str, Any]]] = {n: [] for n in nids}
    if not nids:
        return out
    rows = CurrentStateEvent.objects.filter(room_id__in=nids, type="m.space.child").values_list(
        "room_id", "event__json", "event__redacted_by", "room__room_version"
    )
    for room_nid, raw, redacted_by, version in rows:
        pdu = json.loads(raw)
        if redacted_by is not None:
            pdu = redact_pdu(pdu, get_room_version(version, require_supported=False))
        out[room_nid].append(pdu)
    return out

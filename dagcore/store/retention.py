"""Selectors and writers of the periodic clean-ups: message retention, expired registration
tokens, stale devices (``dagcore.actions.retention``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db.models import F, Q
from django.db.models.functions import Coalesce

from dagcore.models import CurrentStateEvent, Device, Event, RegistrationToken, Room


@dataclass(frozen=True)
class RoomRetention:
    room_nid: int
    room_id: str
    room_version: str
    #: ``m.room.retention``'s content in the room's current state (None: no such state).
    policy: dict[str, Any] | None
    #: Forward extremities' nids: the DAG's newest events, never purged.
    extremities: frozenset[int]


def list_room_retention() -> list[RoomRetention]:
    """Every room with its retention state and extremities (two queries)."""
    policies: dict[int, dict[str, Any]] = {}
    rows = CurrentStateEvent.objects.filter(type="m.room.retention", state_key="").values_list(
        "room_id", "event__json"
    )
    for room_nid, raw in rows:
        content = json.loads(raw).get("content")
        policies[room_nid] = content if isinstance(content, dict) else {}
    out = []
    for nid, room_id, version, extremities in Room.objects.values_list(
        "id", "room_id", "room_version", "forward_extremities"
    ):
        ext = frozenset(int(e[0]) for e in json.loads(extremities or "[]"))
        out.append(RoomRetention(nid, room_id, version, policies.get(nid), ext))
    return out


def expired_messages(
    *, room_nid: int, before_ts: int, keep: frozenset[int], after_nid: int, limit: int
) -> list[tuple[int, str]]:
    """``(nid, json)`` of the room's message (non-state) events sent before ``before_ts`` (past
    ``after_nid``, in nid order),
    except ``keep`` and the room's newest message (a room keeps at least one, as in Synapse)."""
    messages = Event.objects.filter(room_id=room_nid, state_key__isnull=True, outlier=False)
    newest = messages.order_by("-stream_ordering").values_list("id", flat=True).first()
    excluded = set(keep) | ({newest} if newest is not None else set())
    qs = (
        messages.filter(origin_server_ts__lt=before_ts, id__gt=after_nid)
        .exclude(id__in=excluded)
        .order_by("id")
    )
    return list(qs.values_list("id", "json")[:limit])


def replace_event_json(nid: int, text: str) -> None:
    Event.objects.filter(id=nid).update(json=text)


def expired_registration_tokens(*, now: int) -> list[str]:
    """Tokens past their expiry that no registration in progress holds."""
    return list(
        RegistrationToken.objects.filter(expiry_time__lt=now, pending=0)
        .order_by("id")
        .values_list("token", flat=True)
    )


def delete_registration_tokens(*, tokens: list[str], now: int) -> int:
    # The same conditions again: a registration that took one since the preview keeps it.
    deleted, _ = RegistrationToken.objects.filter(token__in=tokens, expiry_time__lt=now, pending=0).delete()
    return int(deleted)


def stale_devices(*, seen_before: int) -> list[tuple[str, str]]:
    """``(user_id, device_id)`` of local devices not seen since ``seen_before`` (never seen:
    since their creation)."""
    qs = (
        Device.objects.annotate(seen=Coalesce(F("last_seen_ts"), F("created_ts")))
        .filter(Q(seen__lt=seen_before))
        .order_by("user__user_id", "device_id")
    )
    return [(str(u), str(d)) for u, d in qs.values_list("user__user_id", "device_id")]

"""Applied redactions, and erasing redacted content once the retention period is over.

An event's ``redacted_by`` column holds the accepted redaction that applies to
it; readers serve such events pruned (``dagcore.events_format``) while the original
JSON is kept for ``redaction_retention_period`` (for moderators), after which
:func:`censor_expired` replaces it with the redacted form for good.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db import transaction

from dagcore.clock import duration_ms, now_ms
from dagcore.models import Event as EventRow
from dagcore.models import Room, StreamCounter
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import get_room_version

#: Counter row remembering the last redaction event (by nid) whose targets were censored.
CENSOR_CURSOR = "censored_redactions"
_BATCH = 500


def parse_duration_ms(value: object) -> int | None:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"1000ms"`` or a number of ms; None for null/"off"."""
    if value is None or value in ("", "off", "never", False):
        return None
    ms = duration_ms(value)
    if ms is None:
        raise ValueError(f"invalid duration {value!r}")
    return ms


def mark_redacted(*, room: Room, target_event_id: str, redaction_event_id: str) -> bool:
    """Record that an accepted redaction applies to the target (first redaction wins)."""
    updated = EventRow.objects.filter(room=room, event_id=target_event_id, redacted_by__isnull=True).update(
        redacted_by=redaction_event_id
    )
    return updated > 0


def get_redactions_of(room: Room, target_event_id: str) -> list[str]:
    """Accepted redactions already stored for an event (it may arrive after them over federation)."""
    return list(
        EventRow.objects.filter(
            room=room, redacts=target_event_id, type="m.room.redaction", rejected_reason__isnull=True
        ).values_list("event_id", flat=True)
    )


def _get_cursor() -> int:
    value = StreamCounter.objects.filter(name=CENSOR_CURSOR).values_list("position", flat=True).first()
    return int(value or 0)


def _set_cursor(position: int) -> None:
    StreamCounter.objects.update_or_create(name=CENSOR_CURSOR, defaults={"position": position})


def censor_expired() -> int:
    """Replace the stored JSON of events redacted longer ago than the retention period.

    Walks redaction events in insertion order past a cursor, so each run only
    looks at redactions it has not handled yet. Returns how many events were censored.
    """
    retention = parse_duration_ms(settings.DAGMA.redaction_retention_period)
    if retention is None:
        return 0
    cutoff = now_ms() - retention
    censored = 0
    while True:
        cursor = _get_cursor()
        batch = list(
            EventRow.objects.filter(type="m.room.redaction", id__gt=cursor, received_ts__lt=cutoff)
            .order_by("id")
            .values_list("id", "event_id")[:_BATCH]
        )
        if not batch:
            return censored
        with transaction.atomic():
            redaction_ids = [eid for _, eid in batch]
            targets = EventRow.objects.filter(redacted_by__in=redaction_ids).values_list(
                "id", "json", "room__room_version"
            )
            for nid, raw, version in targets:
                pdu = json.loads(raw)
                pruned = redact_pdu(pdu, get_room_version(version, require_supported=False))
                text = encode_canonical_json(pruned).decode()
                if text != raw:
                    EventRow.objects.filter(id=nid).update(json=text)
                    censored += 1
            _set_cursor(batch[-1][0])
        if len(batch) < _BATCH:
            return censored

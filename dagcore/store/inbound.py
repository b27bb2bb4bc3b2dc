"""Received ``/send`` transactions and the PDUs staged from them (Embassy's inbound queue)."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import F, Q

from dagcore.models import InboundPdu, ReceivedTransaction
from dagcore.store import transaction
from dagcore.store.rooms import lock_room_for_writing


def lock_transaction_id(origin: str, txn_id: str) -> None:
    """Serialise two attempts of one transaction (PostgreSQL; SQLite writers are serial anyway).

    Must be called inside ``transaction.atomic()``.
    """
    if connection.vendor != "postgresql":
        return
    digest = hashlib.sha256(f"txn\0{origin}\0{txn_id}".encode()).digest()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [struct.unpack(">q", digest[:8])[0]])


def get_transaction_response(*, origin: str, txn_id: str) -> dict[str, Any] | None:
    raw = (
        ReceivedTransaction.objects.filter(origin=origin, txn_id=txn_id)
        .values_list("response", flat=True)
        .first()
    )
    return None if raw is None else dict(json.loads(raw))


@dataclass(frozen=True)
class StagedPdu:
    origin: str
    room_id: str
    event_id: str
    pdu: dict[str, Any]


def record_transaction(
    *,
    origin: str,
    txn_id: str,
    now: int,
    response: dict[str, Any],
    staged: Sequence[StagedPdu],
    edu_count: int,
) -> None:
    """The transaction's answer and its staged PDUs, together (call inside one ``atomic``)."""
    ReceivedTransaction.objects.create(
        origin=origin, txn_id=txn_id, received_ts=now, response=json.dumps(response), edu_count=edu_count
    )
    InboundPdu.objects.bulk_create(
        [
            InboundPdu(
                origin=s.origin,
                room_id=s.room_id,
                event_id=s.event_id,
                pdu=json.dumps(s.pdu),
                received_ts=now,
            )
            for s in staged
        ]
    )


def update_transaction_response(*, origin: str, txn_id: str, response: dict[str, Any]) -> None:
    ReceivedTransaction.objects.filter(origin=origin, txn_id=txn_id).update(response=json.dumps(response))


def expire_transactions(*, before_ts: int) -> int:
    return int(ReceivedTransaction.objects.filter(received_ts__lt=before_ts).delete()[0])


@dataclass(frozen=True)
class ClaimedPdu:
    row_id: int
    origin: str
    room_id: str
    event_id: str
    pdu: dict[str, Any]
    attempts: int


def claim_room_pdus(*, room_id: str, owner: str, now: int, until: int, limit: int = 100) -> list[ClaimedPdu]:
    """The room's staged PDUs in arrival order, leased to ``owner`` — or [] while another worker
    holds the room (one worker per room keeps its PDUs in order). Its own transaction."""
    with transaction.atomic():
        lock_room_for_writing(room_id)
        held = InboundPdu.objects.filter(room_id=room_id, lease_expires_ts__gt=now).exclude(lease_owner=owner)
        if held.exists():
            return []
        rows = list(
            InboundPdu.objects.filter(room_id=room_id)
            .order_by("id")
            .values_list("id", "origin", "room_id", "event_id", "pdu", "attempts")[:limit]
        )
        if not rows:
            return []
        InboundPdu.objects.filter(id__in=[r[0] for r in rows]).update(
            lease_owner=owner, lease_expires_ts=until
        )
    return [ClaimedPdu(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]


def finish_pdus(row_ids: Sequence[int]) -> None:
    """Forget settled PDUs (one statement for a batch; processing one again is harmless: its
    event is found stored)."""
    if row_ids:
        InboundPdu.objects.filter(id__in=list(row_ids)).delete()


def note_pdu_attempt(row_id: int) -> None:
    InboundPdu.objects.filter(id=row_id).update(
        attempts=F("attempts") + 1, lease_owner="", lease_expires_ts=0
    )


def release_room(*, room_id: str, owner: str) -> None:
    InboundPdu.objects.filter(room_id=room_id, lease_owner=owner).update(lease_owner="", lease_expires_ts=0)


def get_rooms_with_staged_pdus(*, now: int) -> list[str]:
    """Rooms with staged PDUs no worker holds (the beat job's re-scan)."""
    return sorted(
        set(
            InboundPdu.objects.filter(Q(lease_expires_ts__lte=now) | Q(lease_owner=""))
            .values_list("room_id", flat=True)
            .distinct()
        )
    )


def count_staged(room_id: str | None = None) -> int:
    qs = InboundPdu.objects.all() if room_id is None else InboundPdu.objects.filter(room_id=room_id)
    return qs.count()

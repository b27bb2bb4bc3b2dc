"""The federation outbox: PDUs per destination server, each destination's back-off and lease.

Rows are written in the event's own transaction (``dagcore.federation.outbox``); the
sender (``dagcore.federation.sender``) reads them per destination in ``id`` order,
sends them as transactions and deletes them on a 200. A destination is sent to by
one sender at a time, in every process: the holder of its lease.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import connection
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce

from dagcore.models import (
    CurrentStateEvent,
    FederationDestination,
    FederationEphemeralEdu,
    FederationOutboxEdu,
    FederationOutboxEntry,
)

# --------------------------------------------------------------------------- writing rows


def get_create_content(room_nid: int) -> dict[str, object]:
    """The content of the room's ``m.room.create`` event ({} when we hold none)."""
    raw = (
        CurrentStateEvent.objects.filter(room_id=room_nid, type="m.room.create", state_key="")
        .values_list("event__json", flat=True)
        .first()
    )
    if raw is None:
        return {}
    content = json.loads(raw).get("content")
    return content if isinstance(content, dict) else {}


def add_outbox_entries_for_event(
    *,
    room_nid: int,
    event_id: str,
    extra_server: str | None,
    exclude: str,
    now: int,
    also_exclude: str | None = None,
) -> list[str]:
    """One outbox row per server with joined members in the room (as of this transaction), plus
    ``extra_server``, but ``exclude`` (us), for the event written in this transaction; returns
    the destinations. One statement, whatever the room: the destination rows (back-off, lease)
    are made by the sender (:func:`ensure_destination`), not here on every event."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO federation_outbox (destination, event_id, room_id, created_ts, txn_id, dead_letter) "
            "SELECT s.server_name, e.id, %s, %s, '', NULL FROM ("
            "  SELECT server_name FROM room_servers WHERE room_id = %s AND joined_count > 0"
            "  UNION SELECT %s AS server_name"
            ") s JOIN events e ON e.event_id = %s "
            "WHERE s.server_name IS NOT NULL AND s.server_name <> '' AND s.server_name <> %s "
            "AND s.server_name <> %s "
            "ON CONFLICT DO NOTHING RETURNING destination",
            [room_nid, now, room_nid, extra_server, event_id, exclude, also_exclude or exclude],
        )
        return sorted(str(row[0]) for row in cur.fetchall())


def add_outbox_edus(*, destinations: Sequence[str], edu_type: str, contents: Sequence[str], now: int) -> None:
    """Durable EDUs (canonical JSON ``contents``) for each destination, in this transaction."""
    FederationOutboxEdu.objects.bulk_create(
        [
            FederationOutboxEdu(destination=d, edu_type=edu_type, content=c, created_ts=now)
            for d in destinations
            for c in contents
        ],
        batch_size=1000,
    )


def upsert_ephemeral_edus(
    *,
    destinations: Sequence[str],
    edu_type: str,
    key: str,
    content: str,
    revision: int,
    expires_ts: int,
    now: int,
) -> None:
    """The latest update of ``(edu_type, key)`` for each destination, replacing an older one
    (even one in a transaction in flight: that transaction no longer owns the row)."""
    FederationEphemeralEdu.objects.bulk_create(
        [
            FederationEphemeralEdu(
                destination=d,
                edu_type=edu_type,
                key=key,
                content=content,
                revision=revision,
                expires_ts=expires_ts,
                created_ts=now,
                txn_id="",
            )
            for d in destinations
        ],
        update_conflicts=True,
        unique_fields=["destination", "edu_type", "key"],
        update_fields=["content", "revision", "expires_ts", "created_ts", "txn_id"],
    )


def _live_ephemeral(now: int | None) -> Q:
    """Ephemeral rows still worth sending at ``now`` (an expired typing notice is not)."""
    return Q() if now is None else Q(expires_ts=0) | Q(expires_ts__gt=now)


def _pending_edu_destinations(now: int | None = None) -> set[str]:
    return set(
        FederationOutboxEdu.objects.filter(dead_letter__isnull=True).values_list("destination", flat=True)
    ) | set(FederationEphemeralEdu.objects.filter(_live_ephemeral(now)).values_list("destination", flat=True))


def ensure_destination(server_name: str) -> None:
    """The destination's state row (back-off, lease), made on first use."""
    FederationDestination.objects.bulk_create(
        [FederationDestination(server_name=server_name)], ignore_conflicts=True
    )


def get_destinations_for_events(event_ids: Sequence[str]) -> list[str]:
    """The destinations that have (undelivered) rows for these events."""
    if not event_ids:
        return []
    return sorted(
        set(
            FederationOutboxEntry.objects.filter(
                event__event_id__in=list(event_ids), dead_letter__isnull=True
            ).values_list("destination", flat=True)
        )
    )


# --------------------------------------------------------------------------- destinations


@dataclass(frozen=True)
class DestinationState:
    server_name: str
    next_attempt_ts: int
    failures: int
    last_success_ts: int | None
    last_failure_ts: int | None
    last_error: str
    dead_lettered: int
    txn_id: str
    pending: int


_STATE_FIELDS = (
    "server_name",
    "next_attempt_ts",
    "failures",
    "last_success_ts",
    "last_failure_ts",
    "last_error",
    "dead_lettered",
    "txn_id",
)


def get_destination(server_name: str) -> DestinationState | None:
    row = FederationDestination.objects.filter(server_name=server_name).values(*_STATE_FIELDS).first()
    if row is None:
        return None
    pending = FederationOutboxEntry.objects.filter(destination=server_name, dead_letter__isnull=True).count()
    pending += FederationOutboxEdu.objects.filter(destination=server_name, dead_letter__isnull=True).count()
    return DestinationState(**row, pending=pending)


def get_due_destinations(*, now: int, limit: int = 1000) -> list[str]:
    """Destinations with undelivered rows whose back-off is over and whose lease is free
    (one never tried yet has no state row: it is due)."""
    pending = set(
        FederationOutboxEntry.objects.filter(dead_letter__isnull=True).values_list("destination", flat=True)
    ) | _pending_edu_destinations(now)
    waiting = set(
        FederationDestination.objects.filter(server_name__in=list(pending))
        .filter(Q(next_attempt_ts__gt=now) | Q(lease_expires_ts__gt=now))
        .values_list("server_name", flat=True)
    )
    return sorted(pending - waiting)[:limit]


def get_destinations_with_pending() -> list[str]:
    return sorted(
        set(
            FederationOutboxEntry.objects.filter(dead_letter__isnull=True).values_list(
                "destination", flat=True
            )
        )
        | _pending_edu_destinations()
    )


def has_pending(server_name: str, *, now: int | None = None) -> bool:
    """Whether the destination has undelivered rows (PDUs, durable EDUs, live ephemeral EDUs)."""
    return (
        FederationOutboxEntry.objects.filter(destination=server_name, dead_letter__isnull=True).exists()
        or FederationOutboxEdu.objects.filter(destination=server_name, dead_letter__isnull=True).exists()
        or FederationEphemeralEdu.objects.filter(_live_ephemeral(now), destination=server_name).exists()
    )


def acquire_lease(*, server_name: str, owner: str, now: int, until: int) -> bool:
    """Take (or renew) the destination's lease; False while another sender holds it."""
    taken = FederationDestination.objects.filter(
        Q(lease_owner=owner) | Q(lease_expires_ts__lte=now), server_name=server_name
    ).update(lease_owner=owner, lease_expires_ts=until)
    return taken == 1


def release_lease(*, server_name: str, owner: str) -> None:
    FederationDestination.objects.filter(server_name=server_name, lease_owner=owner).update(
        lease_owner="", lease_expires_ts=0
    )


def reset_backoff(server_name: str) -> bool:
    """The destination answered or contacted us: try it at once. True if it was backing off."""
    return (
        FederationDestination.objects.filter(server_name=server_name)
        .filter(Q(failures__gt=0) | Q(next_attempt_ts__gt=0))
        .update(failures=0, next_attempt_ts=0, failing_since_ts=None)
        == 1
    )


def record_failure(*, server_name: str, now: int, next_attempt_ts: int, error: str, count: bool) -> None:
    """A failed attempt: not before ``next_attempt_ts`` again (``count``: it raises the back-off)."""
    FederationDestination.objects.filter(server_name=server_name).update(
        failures=F("failures") + (1 if count else 0),
        next_attempt_ts=next_attempt_ts,
        last_failure_ts=now,
        failing_since_ts=Coalesce(F("failing_since_ts"), Value(now)),
        last_error=error[:1000],
    )


# --------------------------------------------------------------------------- transactions


@dataclass(frozen=True)
class PendingTransaction:
    txn_id: str
    #: ``(outbox row id, event nid)`` in outbox order.
    entries: tuple[tuple[int, int], ...]
    #: ``(EDU row id, edu_type, content JSON)`` in outbox order.
    edus: tuple[tuple[int, str, str], ...] = ()
    #: ``(row id, revision, edu_type, content JSON)``: the coalesced typing/receipt/presence rows.
    ephemeral: tuple[tuple[int, int, str, str], ...] = ()


def _edu_rows(server_name: str, *, txn_id: str | None, limit: int | None) -> list[tuple[int, str, str]]:
    qs = FederationOutboxEdu.objects.filter(destination=server_name, dead_letter__isnull=True)
    if txn_id is not None:
        qs = qs.filter(txn_id=txn_id)
    rows = qs.order_by("id").values_list("id", "edu_type", "content")
    return [(int(i), t, c) for i, t, c in (rows[:limit] if limit is not None else rows)]


def _ephemeral_rows(
    server_name: str, *, txn_id: str | None, limit: int | None, now: int
) -> list[tuple[int, int, str, str]]:
    qs = FederationEphemeralEdu.objects.filter(_live_ephemeral(now), destination=server_name)
    if txn_id is not None:
        qs = qs.filter(txn_id=txn_id)
    rows = qs.order_by("id").values_list("id", "revision", "edu_type", "content")
    return [(int(i), int(r), t, c) for i, r, t, c in (rows[:limit] if limit is not None else rows)]


def claim_transaction(
    *,
    server_name: str,
    limit: int,
    new_txn_id: str,
    edu_limit: int = 0,
    ephemeral_limit: int = 0,
    now: int = 0,
    ephemeral_edu_count: Callable[[Sequence[tuple[int, int, str, str]]], int] = len,
) -> PendingTransaction | None:
    """The transaction to send next: the one in flight (same ID, same PDUs and EDUs) if any,
    else the next ``limit`` undelivered PDU rows, up to ``ephemeral_limit`` ephemeral rows
    (typing, receipts, presence: they go first, they are the time-sensitive ones) and as many
    durable EDU rows as ``edu_limit`` leaves (``ephemeral_edu_count``: how many EDUs the
    ephemeral rows make), under ``new_txn_id``. Typing notices expired at ``now`` are dropped,
    from a resent transaction too. Call while holding the lease."""
    FederationEphemeralEdu.objects.filter(
        destination=server_name, expires_ts__gt=0, expires_ts__lte=now
    ).delete()
    current = (
        FederationDestination.objects.filter(server_name=server_name).values_list("txn_id", flat=True).first()
    )
    if current:
        rows = list(
            FederationOutboxEntry.objects.filter(
                destination=server_name, txn_id=current, dead_letter__isnull=True
            )
            .order_by("id")
            .values_list("id", "event_id")
        )
        edus = _edu_rows(server_name, txn_id=current, limit=None)
        ephemeral = _ephemeral_rows(server_name, txn_id=current, limit=None, now=now)
        if rows or edus or ephemeral:
            return PendingTransaction(current, tuple(rows), tuple(edus), tuple(ephemeral))
    rows = list(
        FederationOutboxEntry.objects.filter(destination=server_name, dead_letter__isnull=True)
        .order_by("id")
        .values_list("id", "event_id")[:limit]
    )
    ephemeral = (
        _ephemeral_rows(server_name, txn_id=None, limit=ephemeral_limit, now=now) if ephemeral_limit else []
    )
    durable_limit = edu_limit - ephemeral_edu_count(ephemeral)
    edus = _edu_rows(server_name, txn_id=None, limit=durable_limit) if durable_limit > 0 else []
    if not rows and not edus and not ephemeral:
        if current:
            FederationDestination.objects.filter(server_name=server_name).update(txn_id="")
        return None
    FederationOutboxEntry.objects.filter(id__in=[r[0] for r in rows]).update(txn_id=new_txn_id)
    if edus:
        FederationOutboxEdu.objects.filter(id__in=[e[0] for e in edus]).update(txn_id=new_txn_id)
    if ephemeral:
        FederationEphemeralEdu.objects.filter(id__in=[e[0] for e in ephemeral]).update(txn_id=new_txn_id)
    FederationDestination.objects.filter(server_name=server_name).update(
        txn_id=new_txn_id, txn_counter=F("txn_counter") + 1
    )
    return PendingTransaction(new_txn_id, tuple(rows), tuple(edus), tuple(ephemeral))


def _delete_sent_ephemeral(txn: PendingTransaction) -> None:
    """Delete the ephemeral rows the transaction carried, unless a newer update replaced them."""
    if not txn.ephemeral:
        return
    sent = Q(pk__in=[])
    for row_id, revision, _, _ in txn.ephemeral:
        sent |= Q(id=row_id, revision=revision)
    FederationEphemeralEdu.objects.filter(sent).delete()


def get_txn_counter(server_name: str) -> int:
    return int(
        FederationDestination.objects.filter(server_name=server_name)
        .values_list("txn_counter", flat=True)
        .first()
        or 0
    )


def complete_transaction(*, server_name: str, txn: PendingTransaction, now: int) -> None:
    """The destination answered 200: the transaction's rows are delivered; the back-off resets."""
    FederationOutboxEntry.objects.filter(id__in=[e[0] for e in txn.entries]).delete()
    if txn.edus:
        FederationOutboxEdu.objects.filter(id__in=[e[0] for e in txn.edus]).delete()
    _delete_sent_ephemeral(txn)
    FederationDestination.objects.filter(server_name=server_name).update(
        txn_id="", failures=0, next_attempt_ts=0, last_success_ts=now, last_error="", failing_since_ts=None
    )


def dead_letter_transaction(*, server_name: str, txn: PendingTransaction, reason: str) -> None:
    """The destination refused the transaction for good: keep its rows, marked, and count them."""
    FederationOutboxEntry.objects.filter(id__in=[e[0] for e in txn.entries]).update(
        dead_letter=reason[:1000] or "refused"
    )
    if txn.edus:
        FederationOutboxEdu.objects.filter(id__in=[e[0] for e in txn.edus]).update(
            dead_letter=reason[:1000] or "refused"
        )
    # Typing, receipts and presence are not worth keeping for an operator: a refused one is gone.
    _delete_sent_ephemeral(txn)
    FederationDestination.objects.filter(server_name=server_name).update(
        txn_id="",
        dead_lettered=F("dead_lettered") + len(txn.entries) + len(txn.edus),
        last_error=reason[:1000],
    )


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    room_id: str
    reason: str
    created_ts: int


def get_dead_letters(*, server_name: str, limit: int = 100) -> list[DeadLetter]:
    """PDUs the destination refused for good (newest last), for operators."""
    return [
        DeadLetter(event_id=e, room_id=r, reason=why or "", created_ts=ts)
        for e, r, why, ts in FederationOutboxEntry.objects.filter(
            destination=server_name, dead_letter__isnull=False
        )
        .order_by("id")
        .values_list("event__event_id", "room__room_id", "dead_letter", "created_ts")[:limit]
    ]


def get_pending_event_ids(server_name: str) -> list[str]:
    """The event IDs still to deliver to the destination, in order."""
    return list(
        FederationOutboxEntry.objects.filter(destination=server_name, dead_letter__isnull=True)
        .order_by("id")
        .values_list("event__event_id", flat=True)
    )

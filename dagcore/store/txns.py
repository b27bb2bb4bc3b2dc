"""Client transaction IDs (see ``dagcore.models.txns``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, connection, transaction

from dagcore.clock import now_ms
from dagcore.models import ClientTxn
from dagcore.store.sql import fetch_rows, in_list


def device_key(*, device_id: str | None, token_id: int | None) -> str:
    """The transaction scope of a request: its device, or its access token when it has no device."""
    return device_id if device_id is not None else f"token:{token_id}"


def get_txn_event_id(*, user_id: str, device_key: str, scope: str, txn_id: str) -> str | None:
    """The event a transaction produced, if it is recorded (raw SQL: every send asks)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT event_id FROM client_txns WHERE user_id = %s AND device_key = %s AND scope = %s "
            "AND txn_id = %s",
            [user_id, device_key, scope, txn_id],
        )
        row = cur.fetchone()
    return str(row[0]) if row is not None else None


def record_txn(*, user_id: str, device_key: str, scope: str, txn_id: str, event_id: str) -> bool:
    """Record the transaction as part of the caller's database transaction (the event's own).

    False if it is already recorded: a concurrent request of the same transaction committed
    first (PostgreSQL waits for it on the unique index), and the caller should roll back.
    """
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO client_txns (user_id, device_key, scope, txn_id, event_id, created_ts) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (user_id, device_key, scope, txn_id) DO NOTHING",
            [user_id, device_key, scope, txn_id, event_id, now_ms()],
        )
        return bool(cur.rowcount == 1)


def insert_txn(*, user_id: str, device_key: str, scope: str, txn_id: str, event_id: str) -> bool:
    """Record the transaction; False if the same transaction was recorded concurrently."""
    try:
        with transaction.atomic():
            ClientTxn.objects.create(
                user_id=user_id,
                device_key=device_key,
                scope=scope,
                txn_id=txn_id,
                event_id=event_id,
                created_ts=now_ms(),
            )
    except IntegrityError:
        return False
    return True


def get_txn_ids_for_events(*, user_id: str, device_key: str, event_ids: Iterable[str]) -> dict[str, str]:
    """``event_id -> txn_id`` for events this device sent (``unsigned.transaction_id``)."""
    ids = sorted(set(event_ids))
    if not ids:
        return {}
    params: list[Any] = [user_id, device_key]
    cond = in_list("event_id", ids, params)
    # Raw SQL: every /sync and /messages page with the user's own events asks this.
    return {
        str(e): str(t)
        for e, t in fetch_rows(
            f"SELECT event_id, txn_id FROM client_txns WHERE user_id = %s AND device_key = %s AND {cond}",
            params,
        )
    }


def delete_txns_before(ts: int) -> int:
    deleted, _ = ClientTxn.objects.filter(created_ts__lt=ts).delete()
    return deleted

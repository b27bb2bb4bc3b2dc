"""Client transaction IDs (see ``dagcore.models.txns``)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction

from dagcore.clock import now_ms
from dagcore.models import ClientTxn


def device_key(*, device_id: str | None, token_id: int | None) -> str:
    """The transaction scope of a request: its device, or its access token when it has no device."""
    return device_id if device_id is not None else f"token:{token_id}"


def get_txn_event_id(*, user_id: str, device_key: str, scope: str, txn_id: str) -> str | None:
    return (
        ClientTxn.objects.filter(user_id=user_id, device_key=device_key, scope=scope, txn_id=txn_id)
        .values_list("event_id", flat=True)
        .first()
    )


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
    ids = list(set(event_ids))
    if not ids:
        return {}
    return dict(
        ClientTxn.objects.filter(user_id=user_id, device_key=device_key, event_id__in=ids).values_list(
            "event_id", "txn_id"
        )
    )


def delete_txns_before(ts: int) -> int:
    deleted, _ = ClientTxn.objects.filter(created_ts__lt=ts).delete()
    return deleted

"""Client transaction IDs (spec: client-server API "Transaction identifiers").

The ID is opaque and chosen by the client; it is stored to answer retries, so its
size is bounded (clients use short IDs such as ``m1234.5``).
"""

from __future__ import annotations

from dagcore.http.errors import MatrixError
from dagcore.store import txns as txn_store

MAX_TXN_ID_CHARS = 255


def check_txn_id(txn_id: str) -> None:
    if not txn_id or len(txn_id) > MAX_TXN_ID_CHARS:
        raise MatrixError(
            400, "M_INVALID_PARAM", f"The transaction ID must be 1-{MAX_TXN_ID_CHARS} characters"
        )


def get_answered_event_id(*, user_id: str, device_key: str, scope: str, txn_id: str) -> str | None:
    """The event a retried transaction already made (its answer again), after checking the ID."""
    check_txn_id(txn_id)
    return txn_store.get_txn_event_id(user_id=user_id, device_key=device_key, scope=scope, txn_id=txn_id)

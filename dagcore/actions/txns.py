"""Client transaction IDs (spec: client-server API "Transaction identifiers").

The ID is opaque and chosen by the client; it is stored to answer retries, so its
size is bounded (clients use short IDs such as ``m1234.5``). A transaction is
scoped to the request that used it (``send`` to a room and event type, ``redact``
to a room and target), and recorded in the same database transaction as the event
it made: the event pipeline looks it up and records it under the room's write lock
(``dagcore.actions.persist_event.send_local_event``), so a retry, even one racing the
first attempt, answers the first attempt's event and never makes a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagcore.http.errors import MatrixError
from dagcore.store import txns as txn_store

MAX_TXN_ID_CHARS = 255


@dataclass(frozen=True)
class ClientTxn:
    """One client transaction: whose, from which device (or token), its ID and scope."""

    user_id: str
    device_key: str
    txn_id: str
    #: What the ID was used for: the same ID may name one send and one redaction.
    scope: str = ""

    def in_scope(self, scope: str) -> ClientTxn:
        return ClientTxn(user_id=self.user_id, device_key=self.device_key, txn_id=self.txn_id, scope=scope)


def check_txn_id(txn_id: str) -> None:
    if not txn_id or len(txn_id) > MAX_TXN_ID_CHARS:
        raise MatrixError(
            400, "M_INVALID_PARAM", f"The transaction ID must be 1-{MAX_TXN_ID_CHARS} characters"
        )


def client_txn(*, user_id: str, device_id: str | None, token_id: int | None, txn_id: str) -> ClientTxn:
    """The transaction of a request: scoped to its device, or to its access token when it has none."""
    check_txn_id(txn_id)
    return ClientTxn(
        user_id=user_id,
        device_key=txn_store.device_key(device_id=device_id, token_id=token_id),
        txn_id=txn_id,
    )


def get_answered_event_id(txn: ClientTxn) -> str | None:
    """The event a retried transaction already made (its answer again)."""
    return txn_store.get_txn_event_id(
        user_id=txn.user_id, device_key=txn.device_key, scope=txn.scope, txn_id=txn.txn_id
    )


def record_answer(txn: ClientTxn, *, event_id: str) -> bool:
    """Record ``event_id`` as the transaction's answer, in the caller's (the event's) transaction.

    False: a concurrent attempt of the same transaction recorded its answer first (the
    insert waits for it to commit); the caller rolls its event back and answers that one.
    One statement in the common case, instead of a look-up under the room's lock first.
    """
    return txn_store.record_txn(
        user_id=txn.user_id, device_key=txn.device_key, scope=txn.scope, txn_id=txn.txn_id, event_id=event_id
    )

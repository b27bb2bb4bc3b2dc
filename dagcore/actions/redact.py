"""``PUT /rooms/{roomId}/redact/{eventId}/{txnId}``: a client redacts an event.

Spec: https://spec.matrix.org/v1.19/client-server-api/#redactions. Whether the
client may redact its target is a step of the pipeline every local redaction goes
through (``dagcore.actions.redaction_rules.check_may_redact``), so ``/send`` and
``/state`` redactions are held to the same rule.
"""

from __future__ import annotations

from typing import Any

from dagcore.actions.persist_event import send_local_event
from dagcore.actions.send_event import check_event_input
from dagcore.actions.txns import ClientTxn, get_answered_event_id
from dagcore.http.errors import MatrixError


def check_redact_event(*, txn: ClientTxn, room_id: str, event_id: str, reason: Any) -> str:
    """Redact an event (idempotent per transaction). Own events: any member; others' events: redact level."""
    txn = txn.in_scope(f"redact\x1f{room_id}\x1f{event_id}")
    existing = get_answered_event_id(txn)
    if existing is not None:
        return existing
    if reason is not None and not isinstance(reason, str):
        raise MatrixError(400, "M_INVALID_PARAM", "reason must be a string")
    content: dict[str, Any] = {"reason": reason} if reason else {}
    check_event_input(room_id=room_id, event_type="m.room.redaction", content=content)
    persisted = send_local_event(
        room_id=room_id,
        sender=txn.user_id,
        event_type="m.room.redaction",
        content=content,
        redacts=event_id,
        txn=txn,
    )
    return persisted.event.event_id

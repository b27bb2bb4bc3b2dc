"""The per-destination sender: the outbox, in order, as transactions (DESIGN.md §3 step 5).

Spec: https://spec.matrix.org/v1.19/server-server-api/#transactions
(``PUT /_matrix/federation/v1/send/{txnId}``).

For one destination at a time, :func:`do_send_to_destination`:

* takes the destination's database lease, so one transaction is in flight per
  destination across every worker and process (a holder that dies lets its lease
  run out, and the next sender takes over);
* sends the outbox rows in order, at most :data:`MAX_PDUS_PER_TXN` per transaction;
  a transaction keeps its ID and its PDUs until the destination answers 200, so a
  retry after a crash or a timeout is the *same* transaction, which the receiver
  answers from its record instead of processing twice;
* backs off exponentially with jitter after a failure (reset by a success, or when
  the destination contacts us: :func:`note_peer_contact`); a 429 waits the
  ``retry_after_ms`` it asks for; any other 4xx is final: the transaction's rows are
  dead-lettered (kept, marked, counted — ``store.outbox.get_dead_letters``).

Thin callers: ``embassy.tasks`` (the Celery tasks) and the beat job.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Protocol

from dagcore.clock import now_ms
from dagcore.federation.client import (
    FederationBlocked,
    FederationError,
    FederationHttpError,
    encode_path,
    get_federation_client,
)
from dagcore.federation.ephemeral import (
    MAX_EPHEMERAL_ROWS_PER_TXN,
    build_ephemeral_edus,
    count_ephemeral_edus,
)
from dagcore.observability.metrics import FEDERATION_SEND_SECONDS
from dagcore.protocol.redaction import redact_pdu
from dagcore.server_keys import get_server_name
from dagcore.store import events as event_store
from dagcore.store import outbox as outbox_store
from dagcore.store import transaction
from dagcore.taskqueue.dispatch import enqueue

logger = logging.getLogger("dagma.federation.sender")

#: Spec: "A transaction can contain up to 50 PDUs and 100 EDUs".
MAX_PDUS_PER_TXN = 50
MAX_EDUS_PER_TXN = 100
#: One transaction's whole exchange (Synapse waits 60 s too).
SEND_TIMEOUT_S = 60.0
#: The lease outlives one exchange by a margin, so a slow but live sender is never overtaken.
LEASE_MS = int(SEND_TIMEOUT_S * 1000) * 2
#: Back-off after the first failure, doubled per further failure, capped, with +-20 % jitter.
#: (Synapse waits 10 minutes at first; a peer that is back usually contacts us sooner,
#: which resets the back-off, and our own restart contacts every peer with pending rows.)
MIN_RETRY_MS = 5_000
MAX_RETRY_MS = 3_600_000
RETRY_MULTIPLIER = 2
JITTER = 0.2
#: Transactions one sender run sends before handing the destination back to the queue.
MAX_TXNS_PER_RUN = 200

SEND_TASK = "embassy.tasks.send_to_destination"


class TransactionTransport(Protocol):
    def put_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SendResult:
    #: Transactions answered 200 in this run.
    sent_txns: int
    #: PDUs delivered in this run.
    sent_pdus: int
    #: Why the run ended: "idle", "leased" (another sender has it), "backoff", "failed",
    #: "limit" (more to send; re-queued).
    outcome: str


def backoff_ms(failures: int, *, rand: Callable[[float, float], float] | None = None) -> int:
    """The wait after the ``failures``-th consecutive failure (exponential, capped, jittered)."""
    base = min(MAX_RETRY_MS, MIN_RETRY_MS * RETRY_MULTIPLIER ** min(max(0, failures - 1), 32))
    return int(base * (rand or random.uniform)(1 - JITTER, 1 + JITTER))


def _owner() -> str:
    return (
        f"{socket.gethostname()[:20]}:{os.getpid()}:{threading.get_ident() % 100000}:{secrets.token_hex(3)}"
    )


def _new_txn_id(server_name: str) -> str:
    # Unique per origin for ever (spec): a time prefix survives a wiped counter, the counter orders.
    return f"{now_ms()}.{outbox_store.get_txn_counter(server_name) + 1}"


def _load_pdus(txn: outbox_store.PendingTransaction) -> list[dict[str, Any]]:
    stored = event_store.get_events_by_nids(nid for _, nid in txn.entries)
    pdus = []
    for _, nid in txn.entries:
        event = stored.get(nid)
        if event is None:
            continue  # purged since it was queued: nothing left to send
        pdu = dict(event.event.pdu)
        pdu.pop("unsigned", None)
        if event.redacted_by is not None:
            # Served as we serve it everywhere else: an event redacted since is sent redacted.
            pdu = redact_pdu(pdu, event.event.room_version)
        pdus.append(pdu)
    return pdus


def _load_edus(txn: outbox_store.PendingTransaction, *, now: int) -> list[dict[str, Any]]:
    """The transaction's EDUs: typing, receipts and presence first (coalesced, the time-sensitive
    ones: ``dagcore.federation.ephemeral``), then the durable ones (to-device, device lists,
    signing keys) in outbox order."""
    return build_ephemeral_edus(txn.ephemeral, now=now) + [
        {"edu_type": edu_type, "content": json.loads(content)} for _, edu_type, content in txn.edus
    ]


def _retry_after_ms(exc: FederationHttpError) -> int | None:
    value = (exc.body or {}).get("retry_after_ms")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def do_send_to_destination(
    *, destination: str, transport: TransactionTransport | None = None, owner: str | None = None
) -> SendResult:
    """Send the destination's outbox until it is empty, it fails, or the run's budget is spent."""
    owner = owner or _owner()
    client = transport or get_federation_client()
    origin = get_server_name()
    now = now_ms()
    outbox_store.ensure_destination(destination)
    if not outbox_store.acquire_lease(server_name=destination, owner=owner, now=now, until=now + LEASE_MS):
        return SendResult(0, 0, "leased")
    sent_txns = sent_pdus = 0
    outcome = "idle"
    try:
        for _ in range(MAX_TXNS_PER_RUN):
            state = outbox_store.get_destination(destination)
            now = now_ms()
            if state is None:
                break
            if state.next_attempt_ts > now:
                outcome = "backoff"
                break
            with transaction.atomic():
                txn = outbox_store.claim_transaction(
                    server_name=destination,
                    limit=MAX_PDUS_PER_TXN,
                    new_txn_id=_new_txn_id(destination),
                    edu_limit=MAX_EDUS_PER_TXN,
                    ephemeral_limit=MAX_EPHEMERAL_ROWS_PER_TXN,
                    ephemeral_edu_count=count_ephemeral_edus,
                    now=now,
                )
            if txn is None:
                break
            body = {
                "origin": origin,
                "origin_server_ts": now,
                "pdus": _load_pdus(txn),
                "edus": _load_edus(txn, now=now),
            }
            sending = perf_counter()
            try:
                answer = client.put_json(
                    destination,
                    encode_path("/_matrix/federation/v1/send/{}", txn.txn_id),
                    body,
                    timeout=SEND_TIMEOUT_S,
                )
            except FederationHttpError as exc:
                refused = 400 <= exc.status < 500 and exc.status != 429
                _observe_send(sending, "refused" if refused else "failed")
                retry_after = _retry_after_ms(exc) if exc.status == 429 else None
                if exc.status == 429:
                    wait = retry_after if retry_after is not None else backoff_ms(state.failures + 1)
                    outbox_store.record_failure(
                        server_name=destination,
                        now=now_ms(),
                        next_attempt_ts=now_ms() + wait,
                        error=exc.reason,
                        count=retry_after is None,
                    )
                    outcome = "backoff"
                    break
                if 400 <= exc.status < 500:
                    logger.warning(
                        "%s refused transaction %s (%d PDUs) for good: %s",
                        destination,
                        txn.txn_id,
                        len(txn.entries),
                        exc.reason,
                    )
                    outbox_store.dead_letter_transaction(server_name=destination, txn=txn, reason=exc.reason)
                    continue
                _failed(destination, state.failures, exc)
                outcome = "failed"
                break
            except FederationBlocked as exc:
                _observe_send(sending, "refused")
                # Our own policy refuses the destination (whitelist, address ranges): retrying cannot help.
                outbox_store.dead_letter_transaction(server_name=destination, txn=txn, reason=exc.reason)
                continue
            except FederationError as exc:
                _observe_send(sending, "failed")
                _failed(destination, state.failures, exc)
                outcome = "failed"
                break
            _observe_send(sending, "ok")
            _log_pdu_errors(destination, txn.txn_id, answer)
            outbox_store.complete_transaction(server_name=destination, txn=txn, now=now_ms())
            sent_txns += 1
            sent_pdus += len(txn.entries)
            if not outbox_store.acquire_lease(
                server_name=destination, owner=owner, now=now_ms(), until=now_ms() + LEASE_MS
            ):
                outcome = "leased"  # our lease ran out during the exchange and another sender took over
                return SendResult(sent_txns, sent_pdus, outcome)
        else:
            outcome = "limit"
    finally:
        outbox_store.release_lease(server_name=destination, owner=owner)
    if outcome == "limit":
        enqueue(SEND_TASK, destination)
    elif outcome == "idle" and outbox_store.has_pending(destination, now=now_ms()):
        # A row committed after our last look, whose nudge found our lease still taken and
        # left ("leased"): nobody else will send it before the beat re-scan. Looked at after
        # the release, so any later row's own nudge finds the lease free.
        enqueue(SEND_TASK, destination)
    return SendResult(sent_txns, sent_pdus, outcome)


def _observe_send(started: float, outcome: str) -> None:
    FEDERATION_SEND_SECONDS.labels(outcome).observe(perf_counter() - started)


def _failed(destination: str, failures: int, exc: FederationError) -> None:
    wait = backoff_ms(failures + 1)
    logger.info("sending to %s failed (%s); next attempt in %d ms", destination, exc.reason, wait)
    outbox_store.record_failure(
        server_name=destination, now=now_ms(), next_attempt_ts=now_ms() + wait, error=exc.reason, count=True
    )


def _log_pdu_errors(destination: str, txn_id: str, answer: dict[str, Any]) -> None:
    # Spec: per-PDU errors are the receiver's verdicts; a transaction answered 200 is not resent.
    results = answer.get("pdus")
    if not isinstance(results, dict):
        return
    for event_id, result in results.items():
        if isinstance(result, dict) and result.get("error"):
            logger.info(
                "%s: %s in transaction %s: %s", destination, event_id, txn_id, str(result["error"])[:200]
            )


def do_send_pending() -> list[str]:
    """Beat: queue a sender for every destination with undelivered rows and no back-off left."""
    due = outbox_store.get_due_destinations(now=now_ms())
    for destination in due:
        enqueue(SEND_TASK, destination)
    return due


def note_peer_contact(server_name: str) -> None:
    """The server contacted us (an authenticated request): it is up, so stop backing off from it
    and send what waits for it now (spec: nothing; Synapse does the same on inbound traffic)."""
    if outbox_store.reset_backoff(server_name):
        enqueue(SEND_TASK, server_name)


def do_contact_pending_peers() -> list[str]:
    """On Embassy's start: every destination with pending rows is tried now — our traffic tells
    each peer we are back, so its backlog to us drains too."""
    pending = outbox_store.get_destinations_with_pending()
    for destination in pending:
        outbox_store.reset_backoff(destination)
        enqueue(SEND_TASK, destination)
    return pending

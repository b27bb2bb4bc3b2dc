"""Durable EDUs to other servers: written to the outbox in the transaction of the change.

Spec: server-server API "Transactions" (EDUs), "Send-to-device messaging", "Device
Management", "End-to-End Encryption" (``m.signing_key_update``). To-device messages,
device-list updates and cross-signing updates must arrive even if the destination or
our Embassy is down when they are made (issue 11): like PDUs they are rows of the
federation outbox (``federation_outbox_edus``), written with the change they report
and sent by the per-destination sender in the same transactions as PDUs. After the
commit a nudge starts the senders (as :func:`dagcore.federation.outbox.nudge_senders`
does for events); without it the beat job finds the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings

from dagcore.clock import now_ms
from dagcore.federation.outbox import SEND_TASK, sends_in_this_process
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.server_keys import get_server_name
from dagcore.store import outbox as outbox_store
from dagcore.store import transaction
from dagcore.taskqueue.dispatch import enqueue

#: An EDU's content stays well under the spec's 64 KiB per EDU (to-device batches are split).
MAX_EDU_CONTENT_BYTES = 48 * 1024


def queue_edus(
    *, destinations: Iterable[str], edu_type: str, contents: Sequence[dict[str, Any]]
) -> list[str]:
    """Outbox rows for ``contents`` to each destination (never ourselves), in the caller's
    transaction; the senders are nudged after it commits. Returns the destinations."""
    if not settings.DAGMA.federation_enabled or not contents:
        return []
    ours = get_server_name()
    targets = sorted({d for d in destinations if d and d != ours})
    if not targets:
        return []
    encoded = [encode_canonical_json(c).decode() for c in contents]
    with transaction.atomic():
        outbox_store.add_outbox_edus(destinations=targets, edu_type=edu_type, contents=encoded, now=now_ms())
        if sends_in_this_process():
            for destination in targets:
                enqueue(SEND_TASK, destination)
    return targets

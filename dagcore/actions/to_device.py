"""Send-to-device messaging, local delivery (spec: client-server API "Send-to-Device messaging").

Messages go into each target device's inbox at their own stream position;
``/sync`` hands them out in order and deletes them only once the device syncs
with a later ``since`` token (spec: "the server ... should delete the messages
once the client has acknowledged them by using the next_batch token").
Idempotent per ``(device, txnId)`` (spec: "Transaction identifiers").
"""

from __future__ import annotations

import secrets
from typing import Any

from dagcore.actions.txns import check_txn_id
from dagcore.clock import now_ms
from dagcore.federation.edus import MAX_EDU_CONTENT_BYTES, queue_edus
from dagcore.http.errors import MatrixError
from dagcore.notifier import Change, notify
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.server_keys import get_server_name
from dagcore.store import to_device as store
from dagcore.store import transaction
from dagcore.store import txns as txn_store
from dagcore.store.streams import advance_stream
from dagcore.store.to_device import InboxMessage

#: Messages one request may address (a user with many devices times many users).
MAX_MESSAGES_PER_REQUEST = 10_000
#: Messages one /sync delivers; the rest come with the next sync, at once.
MAX_MESSAGES_PER_SYNC = 100
WILDCARD_DEVICE = "*"
#: How long an inbound ``m.direct_to_device`` ``message_id`` is remembered. The spec's dedupe
#: guards against a resent EDU, and a sender resends one only while its transaction is
#: unanswered (minutes to hours of back-off); a week covers long outages and bounds the table.
RECEIVED_MESSAGE_ID_LIFETIME_MS = 7 * 24 * 3600 * 1000


def _parse_messages(messages: object) -> list[tuple[str, str, dict[str, Any]]]:
    if not isinstance(messages, dict):
        raise MatrixError(400, "M_BAD_JSON", "messages must be an object of user ID -> device ID -> content")
    parsed: list[tuple[str, str, dict[str, Any]]] = []
    for user_id, by_device in messages.items():
        if not isinstance(user_id, str) or not user_id.startswith("@") or ":" not in user_id:
            raise MatrixError(400, "M_INVALID_PARAM", f"Not a user ID: {str(user_id)[:100]}")
        if not isinstance(by_device, dict):
            raise MatrixError(
                400, "M_BAD_JSON", "messages must map each user ID to an object of device ID -> content"
            )
        for device_id, content in by_device.items():
            if not isinstance(content, dict):
                raise MatrixError(400, "M_BAD_JSON", "each message content must be an object")
            parsed.append((user_id, device_id, content))
    if len(parsed) > MAX_MESSAGES_PER_REQUEST:
        raise MatrixError(413, "M_TOO_LARGE", f"At most {MAX_MESSAGES_PER_REQUEST} messages per request")
    return parsed


def check_send_to_device(
    *, sender: str, device_key: str, event_type: str, txn_id: str, messages: object
) -> int:
    """Deliver to local devices, queue the rest for their servers; returns how many local
    messages were queued (0 for a retried txn).

    Messages for other servers' users go into the federation outbox as
    ``m.direct_to_device`` EDUs, one per destination (split when large), in this
    request's transaction: they survive an outage of the destination or of our Embassy.
    """
    if not event_type or len(event_type) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "The event type must be 1-255 characters")
    check_txn_id(txn_id)
    parsed = _parse_messages(messages)
    server = f":{get_server_name()}"
    local = [(u, d, c) for u, d, c in parsed if u.endswith(server)]
    remote = [(u, d, c) for u, d, c in parsed if not u.endswith(server)]
    with transaction.atomic():
        if not txn_store.insert_txn(
            user_id=sender,
            device_key=device_key,
            scope=f"sendToDevice/{event_type}",
            txn_id=txn_id,
            event_id="",
        ):
            return 0  # the same transaction again: answered as the first time, nothing re-sent
        if remote:
            _queue_remote(sender=sender, event_type=event_type, messages=remote)
        return _deliver_local(sender=sender, event_type=event_type, messages=local)


def _deliver_local(*, sender: str, event_type: str, messages: list[tuple[str, str, dict[str, Any]]]) -> int:
    """Into the inboxes of our users' devices (``*``: every device), in the caller's transaction."""
    devices = store.get_device_ids(u for u, _, _ in messages)
    expanded: list[tuple[str, str, dict[str, Any]]] = []
    for user_id, device_id, content in messages:
        known = devices.get(user_id, [])
        if device_id == WILDCARD_DEVICE:
            expanded.extend((user_id, d, content) for d in known)
        elif device_id in known:
            expanded.append((user_id, device_id, content))
    if not expanded:
        return 0
    last = advance_stream("to_device", by=len(expanded))
    store.insert_messages(
        sender=sender, event_type=event_type, messages=expanded, first_stream_id=last - len(expanded) + 1
    )
    notify(Change(stream="to_device", position=last, user_ids=tuple(sorted({u for u, _, _ in expanded}))))
    return len(expanded)


def _queue_remote(*, sender: str, event_type: str, messages: list[tuple[str, str, dict[str, Any]]]) -> None:
    """``m.direct_to_device`` EDUs per destination server (spec: server-server API
    "Send-to-device messaging"), each under a fresh ``message_id`` the receiver
    deduplicates by; split so that no EDU's content outgrows the transaction limits."""
    by_server: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for message in messages:
        by_server.setdefault(message[0].partition(":")[2], []).append(message)
    for destination, batch in sorted(by_server.items()):
        contents: list[dict[str, Any]] = []
        current: dict[str, dict[str, dict[str, Any]]] = {}
        size = 0
        for user_id, device_id, content in batch:
            item = len(encode_canonical_json(content)) + len(user_id) + len(device_id) + 8
            if current and size + item > MAX_EDU_CONTENT_BYTES:
                contents.append(_edu(sender, event_type, current))
                current, size = {}, 0
            current.setdefault(user_id, {})[device_id] = content
            size += item
        if current:
            contents.append(_edu(sender, event_type, current))
        queue_edus(destinations=[destination], edu_type="m.direct_to_device", contents=contents)


def _edu(sender: str, event_type: str, messages: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    return {
        "sender": sender,
        "type": event_type,
        "message_id": secrets.token_urlsafe(16),
        "messages": messages,
    }


def do_receive_direct_to_device(*, origin: str, content: Any) -> int:
    """Deliver an ``m.direct_to_device`` EDU to our users' devices; how many messages.

    The sender must be a user of the origin (else the EDU is dropped); messages for
    users of other servers are ignored. A ``message_id`` already delivered from this
    origin is not delivered again (spec: the ID is there so a resent EDU is recognised).
    """
    if not isinstance(content, dict):
        return 0
    sender = content.get("sender")
    event_type = content.get("type")
    message_id = content.get("message_id")
    messages = content.get("messages")
    if (
        not isinstance(sender, str)
        or sender.partition(":")[2] != origin
        or not sender.startswith("@")
        or not isinstance(event_type, str)
        or not 0 < len(event_type) <= 255
        or not isinstance(message_id, str)
        or not 0 < len(message_id) <= 255
    ):
        return 0
    try:
        parsed = _parse_messages(messages)
    except MatrixError:
        return 0
    server = f":{get_server_name()}"
    local = [(u, d, c) for u, d, c in parsed if u.endswith(server)]
    with transaction.atomic():
        if not store.record_received_message_id(origin=origin, message_id=message_id, now=now_ms()):
            return 0
        return _deliver_local(sender=sender, event_type=event_type, messages=local)


def do_expire_received_message_ids(*, now: int | None = None) -> int:
    """Beat: forget inbound to-device message IDs older than
    :data:`RECEIVED_MESSAGE_ID_LIFETIME_MS`; returns how many."""
    now = now if now is not None else now_ms()
    return store.delete_received_message_ids_before(before_ts=now - RECEIVED_MESSAGE_ID_LIFETIME_MS)


def get_device_inbox(
    *, user_id: str, device_id: str, acknowledged: int | None, upto: int, limit: int = MAX_MESSAGES_PER_SYNC
) -> tuple[list[InboxMessage], int]:
    """Messages after ``acknowledged`` (deleting those up to it) and the position to hand back.

    The position is ``upto`` unless the inbox had more than ``limit`` messages:
    then it is the last one delivered, so the rest follow with the next sync.
    """
    after = acknowledged or 0
    if acknowledged:
        store.delete_messages_upto(user_id=user_id, device_id=device_id, upto=acknowledged)
    messages = store.get_messages(
        user_id=user_id, device_id=device_id, after=after, upto=upto, limit=limit + 1
    )
    if len(messages) > limit:
        messages = messages[:limit]
        return messages, messages[-1].stream_id
    return messages, upto


def acknowledge_device_inbox(*, user_id: str, device_id: str, upto: int) -> int:
    """Delete the messages the device has acknowledged (a sync from a token past them)."""
    return store.delete_messages_upto(user_id=user_id, device_id=device_id, upto=upto)


def to_device_event(message: InboxMessage) -> dict[str, Any]:
    return {"type": message.type, "sender": message.sender, "content": message.content}

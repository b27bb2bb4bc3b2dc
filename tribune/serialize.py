"""Turning stored PDUs into the client event format (spec: client-server "Room Event Format").

Federation-only keys (hashes, signatures, auth/prev events, depth, origin) are
dropped; redacted events are pruned with the room version's redaction algorithm
and carry ``unsigned.redacted_because``; the sender's own events carry the
``transaction_id`` they were sent with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dagcore.clock import now_ms
from dagcore.protocol.events import Event
from dagcore.protocol.redaction import redact_pdu

CLIENT_KEYS = ("content", "event_id", "origin_server_ts", "room_id", "sender", "state_key", "type")


def serialize_event(
    event: Event,
    *,
    redacted_because: Event | None = None,
    transaction_id: str | None = None,
    prev_content: Mapping[str, Any] | None = None,
    prev_sender: str | None = None,
    include_room_id: bool = True,
    now: int | None = None,
) -> dict[str, Any]:
    pdu = event.pdu
    if redacted_because is not None:
        pdu = redact_pdu(pdu, event.room_version)
    out: dict[str, Any] = {k: pdu[k] for k in CLIENT_KEYS if k in pdu}
    out["event_id"] = event.event_id
    out["room_id"] = event.room_id
    if not include_room_id:
        out.pop("room_id", None)
    if event.type == "m.room.redaction" and event.redacts and redacted_because is None:
        # Clients read the target from the top level in every room version.
        out["redacts"] = event.redacts
    unsigned: dict[str, Any] = {"age": max(0, (now or now_ms()) - event.origin_server_ts)}
    if redacted_because is not None:
        unsigned["redacted_because"] = serialize_event(redacted_because, now=now)
    if transaction_id is not None:
        unsigned["transaction_id"] = transaction_id
    if prev_content is not None:
        unsigned["prev_content"] = dict(prev_content)
        if prev_sender is not None:
            unsigned["prev_sender"] = prev_sender
    out["unsigned"] = unsigned
    return out


def strip_state(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Stripped state events (invites, knocks): type, state_key, sender, content."""
    return [
        {"type": e.type, "state_key": e.state_key, "sender": e.sender, "content": e.content}
        for e in events
        if e.state_key is not None
    ]

"""Turning stored PDUs into the client event format (spec: client-server "Room Event Format").

Federation-only keys (hashes, signatures, auth/prev events, depth, origin) are
dropped; redacted events are pruned with the room version's redaction algorithm
and carry ``unsigned.redacted_because``; the sender's own events carry the
``transaction_id`` they were sent with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagcore.clock import now_ms
from dagcore.protocol.events import Event
from dagcore.protocol.redaction import redact_pdu
from dagcore.store.events import StoredEvent
from dagcore.store.timeline import RelationSummary


@dataclass
class ClientEventExtras:
    """What serialising events for one client needs beyond the events (``dagcore.actions.room_access.get_client_event_extras``)."""

    #: redacted event ID -> the redaction that applies to it
    redactions: dict[str, Event] = field(default_factory=dict)
    #: event ID -> transaction ID of the requesting device
    txn_ids: dict[str, str] = field(default_factory=dict)
    #: state event ID -> (prev_content, prev_sender) of the state it replaced
    prev_state: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    relations: RelationSummary = field(default_factory=RelationSummary)


#: The state shown with an invite or a knock (spec "Stripped state": the recommended events).
STRIPPED_STATE_KEYS: tuple[tuple[str, str], ...] = (
    ("m.room.create", ""),
    ("m.room.name", ""),
    ("m.room.avatar", ""),
    ("m.room.topic", ""),
    ("m.room.join_rules", ""),
    ("m.room.canonical_alias", ""),
    ("m.room.encryption", ""),
)

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


def serialize_stored_events(
    events: Sequence[StoredEvent],
    extras: ClientEventExtras | None = None,
    *,
    include_room_id: bool = True,
    now: int | None = None,
) -> list[dict[str, Any]]:
    """Serialise stored events for one client with what ``get_client_event_extras`` loaded.

    Adds ``unsigned.redacted_because`` (and prunes), ``transaction_id`` for the
    requesting device's own events, ``prev_content``/``prev_sender`` of state
    events, and the bundled aggregations clients rely on
    (spec: "Server-side aggregation of child events": ``m.thread``, ``m.replace``,
    ``m.reference`` in ``unsigned.m.relations``).
    """
    now = now if now is not None else now_ms()
    out: list[dict[str, Any]] = []
    for stored in events:
        event = stored.event
        eid = event.event_id
        prev = extras.prev_state.get(eid) if extras else None
        data = serialize_event(
            event,
            redacted_because=extras.redactions.get(eid) if extras else None,
            transaction_id=extras.txn_ids.get(eid) if extras else None,
            prev_content=prev[0] if prev else None,
            prev_sender=prev[1] if prev else None,
            include_room_id=include_room_id,
            now=now,
        )
        if extras is not None and "redacted_because" not in data["unsigned"]:
            relations = _bundled_relations(eid, extras, include_room_id=include_room_id, now=now)
            if relations:
                data["unsigned"]["m.relations"] = relations
        out.append(data)
    return out


def _bundled_relations(
    event_id: str, extras: ClientEventExtras, *, include_room_id: bool, now: int
) -> dict[str, Any]:
    rel = extras.relations
    bundle: dict[str, Any] = {}
    thread = rel.threads.get(event_id)
    if thread is not None:
        count, latest, participated = thread
        bundle["m.thread"] = {
            "latest_event": serialize_event(latest.event, include_room_id=include_room_id, now=now),
            "count": count,
            "current_user_participated": participated,
        }
    edit = rel.edits.get(event_id)
    if edit is not None:
        bundle["m.replace"] = serialize_event(edit.event, include_room_id=include_room_id, now=now)
    refs = rel.references.get(event_id)
    if refs:
        bundle["m.reference"] = {"chunk": [{"event_id": r} for r in refs]}
    return bundle

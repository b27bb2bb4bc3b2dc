"""Sending events from clients: messages (idempotent per transaction) and state.

Spec: https://spec.matrix.org/v1.19/client-server-api/#put_matrixclientv3roomsroomidsendeventtypetxnid
and ``PUT /rooms/{roomId}/state/{eventType}/{stateKey}``. Authorisation is the
room's auth rules (``persist_event.send_local_event``); a refusal is 403 M_FORBIDDEN with
the rule's reason.
"""

from __future__ import annotations

from typing import Any

from dagcore.actions.persist_event import send_local_event
from dagcore.actions.txns import ClientTxn, get_answered_event_id
from dagcore.caching import BoundedCache
from dagcore.http.errors import MatrixError, not_in_room
from dagcore.protocol.canonical_json import JsonError, check_event_values, encode_canonical_json
from dagcore.protocol.identifiers import is_valid_room_alias
from dagcore.protocol.pdu_validation import MAX_PDU_BYTES
from dagcore.protocol.room_versions import get_room_version
from dagcore.server_keys import get_server_name
from dagcore.store import directory as directory_store
from dagcore.store import rooms as room_store
from dagcore.store import timeline

#: Room for what the server adds to the client's content (keys, hashes, signatures,
#: prev/auth events): a request whose event could exceed the PDU limit is refused up front.
PDU_OVERHEAD_BYTES = 2048
MAX_ID_BYTES = 255


def check_event_input(*, room_id: str, event_type: str, content: Any, state_key: str | None = None) -> None:
    """Refuse what could never become a valid event (400/413), before anything is written."""
    if not event_type or len(event_type.encode()) > MAX_ID_BYTES:
        raise MatrixError(400, "M_INVALID_PARAM", "The event type must be 1-255 bytes")
    if state_key is not None and len(state_key.encode()) > MAX_ID_BYTES:
        raise MatrixError(400, "M_INVALID_PARAM", "The state key must be at most 255 bytes")
    if not isinstance(content, dict):
        raise MatrixError(400, "M_BAD_JSON", "Event content must be a JSON object")
    version = _room_version(room_id)
    strict = True
    if version is not None:
        strict = get_room_version(version, require_supported=False).strict_canonicaljson
    try:
        # Room versions 6+ allow no floats and only integers within ±(2**53-1) (spec: rooms/v6).
        check_event_values(content, strict=strict)
    except JsonError as exc:
        raise MatrixError(400, exc.errcode, str(exc)) from None
    check_content_size(event_type=event_type, state_key=state_key, content=content)


#: Room ID -> room version, for the input checks of every send: a room's version never
#: changes (an upgrade makes a new room), so this per-process memory is never stale.
ROOM_VERSION_CACHE_SIZE = 50_000
_room_versions: BoundedCache[str, str] = BoundedCache(
    "send_event.room_versions", maxsize=ROOM_VERSION_CACHE_SIZE
)


def _room_version(room_id: str) -> str | None:
    version = _room_versions.get(room_id)
    if version is not None:
        return version
    room = room_store.get_room(room_id)
    if room is None:
        return None
    _room_versions.put(room_id, room.room_version)
    return room.room_version


def check_content_size(*, event_type: str, state_key: str | None, content: dict[str, Any]) -> None:
    """413 M_TOO_LARGE if an event with this content could exceed the PDU limit (content already checked)."""
    size = len(encode_canonical_json(content)) + len(event_type) + len(state_key or "") + PDU_OVERHEAD_BYTES
    if size > MAX_PDU_BYTES:
        raise MatrixError(413, "M_TOO_LARGE", f"Events may be at most {MAX_PDU_BYTES} bytes")


def check_send_event(*, txn: ClientTxn, room_id: str, event_type: str, content: Any) -> str:
    """Send a message event; the same transaction (user, device, room, type, txnId) answers the same event ID."""
    txn = txn.in_scope(f"send\x1f{room_id}\x1f{event_type}")
    # Retries skip the room's write lock; one racing the first attempt is settled under it.
    existing = get_answered_event_id(txn)
    if existing is not None:
        return existing
    check_event_input(room_id=room_id, event_type=event_type, content=content)
    redacts = None
    if event_type == "m.room.redaction":
        value = content.get("redacts")
        if not isinstance(value, str):
            raise MatrixError(400, "M_BAD_JSON", "A redaction needs content.redacts (or use /redact)")
        redacts = value  # checked by the pipeline, as every local redaction
    persisted = send_local_event(
        room_id=room_id, sender=txn.user_id, event_type=event_type, content=content, redacts=redacts, txn=txn
    )
    return persisted.event.event_id


def _check_canonical_alias_content(room_id: str, content: dict[str, Any]) -> None:
    """spec m.room.canonical_alias: 400 M_BAD_ALIAS unless every local alias points to this room."""
    aliases: list[Any] = []
    if "alias" in content and content["alias"] is not None:
        aliases.append(content["alias"])
    alt = content.get("alt_aliases")
    if alt is not None:
        if not isinstance(alt, list):
            raise MatrixError(400, "M_INVALID_PARAM", "alt_aliases must be a list")
        aliases.extend(alt)
    server_name = get_server_name()
    for alias in aliases:
        if not is_valid_room_alias(alias):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room alias: {alias!r}")
        if alias.split(":", 1)[1] == server_name:
            row = directory_store.get_alias(alias)
            if row is None or row.room_id != room_id:
                raise MatrixError(400, "M_BAD_ALIAS", f"{alias} does not point to this room")


def check_send_state(*, user_id: str, room_id: str, event_type: str, state_key: str, content: Any) -> str:
    """Send a state event. Re-sending the current content (same sender) changes nothing."""
    check_event_input(room_id=room_id, event_type=event_type, content=content, state_key=state_key)
    if event_type == "m.room.canonical_alias":
        _check_canonical_alias_content(room_id, content)
    room = room_store.get_room(room_id)
    if room is None:
        raise not_in_room()
    current = timeline.get_current_state_event(room, event_type, state_key)
    if (
        current is not None
        and current.event.sender == user_id
        and current.event.content == content
        and not current.redacted_by
    ):
        # Idempotent like Synapse: clients re-send state on retries.
        return current.event_id
    persisted = send_local_event(
        room_id=room_id, sender=user_id, event_type=event_type, content=content, state_key=state_key
    )
    return persisted.event.event_id

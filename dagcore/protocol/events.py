"""A read-only view of a PDU that the rest of the protocol core works with.

Spec: https://spec.matrix.org/v1.19/server-server-api/#pdus and the per-version
"Event format" sections of https://spec.matrix.org/v1.19/rooms/.

The PDU dict stays the source of truth (it is what is hashed, signed and sent);
:class:`Event` only pre-extracts the fields that auth rules and state resolution
read in their inner loops and papers over the differences between event formats
(``[event_id, hashes]`` pairs in v1/v2, bare IDs later; ``redacts`` at top level
before v11 and in ``content`` from v11; no ``room_id`` on a v12 create event).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagcore.protocol.hashing import compute_event_id
from dagcore.protocol.room_versions import EventFormat, RoomVersion

#: A state map key: ``(event type, state_key)``.
StateKey = tuple[str, str]
#: A state map: key -> event ID.
StateMap = Mapping[StateKey, str]


class InvalidEvent(ValueError):
    """The PDU does not have the shape the room version requires."""


def _event_ids(value: object, event_format: EventFormat, field: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidEvent(f"{field} must be a list")
    out: list[str] = []
    for item in value:
        if event_format is EventFormat.V1:
            # v1/v2: [event_id, {"sha256": ...}] pairs.
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise InvalidEvent(f"{field} entries must be [event_id, hashes] pairs")
            out.append(item[0])
        else:
            if not isinstance(item, str):
                raise InvalidEvent(f"{field} entries must be event ID strings")
            out.append(item)
    return tuple(out)


class Event:
    """An immutable PDU plus its event ID and room version."""

    __slots__ = (
        "auth_event_ids",
        "content",
        "depth",
        "event_id",
        "origin_server_ts",
        "pdu",
        "prev_event_ids",
        "rejected_reason",
        "room_id",
        "room_version",
        "sender",
        "state_key",
        "type",
    )

    pdu: dict[str, Any]
    event_id: str
    room_version: RoomVersion
    room_id: str
    type: str
    state_key: str | None
    sender: str
    content: dict[str, Any]
    prev_event_ids: tuple[str, ...]
    auth_event_ids: tuple[str, ...]
    depth: int
    origin_server_ts: int
    rejected_reason: str | None

    def __init__(
        self,
        pdu: dict[str, Any],
        room_version: RoomVersion,
        event_id: str | None = None,
        *,
        rejected_reason: str | None = None,
    ) -> None:
        if not isinstance(pdu, dict):
            raise InvalidEvent("PDU must be a JSON object")
        self.pdu = pdu
        self.room_version = room_version
        self.rejected_reason = rejected_reason
        if event_id is None:
            if room_version.event_format is EventFormat.V1:
                event_id = pdu.get("event_id")
                if not isinstance(event_id, str):
                    raise InvalidEvent("v1/v2 PDUs carry their event_id")
            else:
                event_id = compute_event_id(pdu, room_version)
        self.event_id = event_id

        etype = pdu.get("type")
        sender = pdu.get("sender")
        content = pdu.get("content")
        if not isinstance(etype, str):
            raise InvalidEvent("type must be a string")
        if not isinstance(sender, str):
            raise InvalidEvent("sender must be a string")
        if not isinstance(content, dict):
            raise InvalidEvent("content must be an object")
        self.type = etype
        self.sender = sender
        self.content = content

        state_key = pdu.get("state_key")
        if state_key is not None and not isinstance(state_key, str):
            raise InvalidEvent("state_key must be a string")
        self.state_key = state_key

        room_id = pdu.get("room_id")
        if (
            room_id is None
            and room_version.room_id_is_create_event_hash
            and etype == "m.room.create"
            and state_key == ""
        ):
            # v12: the create event has no room_id; the room ID is derived from its
            # event ID ("!" + the reference hash), spec rooms/v12 "Room IDs".
            room_id = "!" + event_id[1:]
        if not isinstance(room_id, str):
            raise InvalidEvent("room_id must be a string")
        self.room_id = room_id

        self.prev_event_ids = _event_ids(pdu.get("prev_events", []), room_version.event_format, "prev_events")
        self.auth_event_ids = _event_ids(pdu.get("auth_events", []), room_version.event_format, "auth_events")

        depth = pdu.get("depth", 0)
        ts = pdu.get("origin_server_ts", 0)
        if not isinstance(depth, int) or isinstance(depth, bool):
            raise InvalidEvent("depth must be an integer")
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise InvalidEvent("origin_server_ts must be an integer")
        self.depth = depth
        self.origin_server_ts = ts

    # -- derived fields -------------------------------------------------------

    def is_state(self) -> bool:
        return self.state_key is not None

    @property
    def state_tuple(self) -> StateKey:
        """``(type, state_key)``; only meaningful for state events."""
        assert self.state_key is not None
        return (self.type, self.state_key)

    @property
    def redacts(self) -> str | None:
        """The event an ``m.room.redaction`` targets (in ``content`` from v11, spec rooms/v11)."""
        if self.type != "m.room.redaction":
            return None
        value: object = None
        if self.room_version.updated_redaction_rules:
            value = self.content.get("redacts")
        if value is None:
            value = self.pdu.get("redacts")
        return value if isinstance(value, str) else None

    @property
    def membership(self) -> str | None:
        if self.type != "m.room.member":
            return None
        value = self.content.get("membership")
        return value if isinstance(value, str) else None

    @property
    def origin(self) -> str:
        """The server that created the event: the sender's domain."""
        return self.sender.split(":", 1)[1] if ":" in self.sender else ""

    @property
    def unsigned(self) -> dict[str, Any]:
        value = self.pdu.get("unsigned")
        return value if isinstance(value, dict) else {}

    def create_event_id_for_v12(self) -> str:
        """v12: every event's create event is implied by its room ID."""
        return "$" + self.room_id[1:]

    def __repr__(self) -> str:
        return f"<Event {self.event_id} {self.type} {self.state_key!r} by {self.sender}>"

    def __hash__(self) -> int:
        return hash(self.event_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.event_id == self.event_id

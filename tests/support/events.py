"""Building events as another homeserver would: hashed and signed with its own key."""

from __future__ import annotations

from typing import Any

from dagcore.protocol import signing
from dagcore.protocol.events import Event
from dagcore.protocol.hashing import add_content_hash, compute_event_id
from dagcore.protocol.room_versions import RoomVersion


class RemoteServer:
    def __init__(self, server_name: str) -> None:
        self.server_name = server_name
        self.key = signing.generate_signing_key()

    def event(
        self,
        room_version: RoomVersion,
        *,
        room_id: str,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        prev_events: list[str],
        auth_events: list[str],
        depth: int,
        state_key: str | None = None,
        origin_server_ts: int = 1_700_000_000_000,
    ) -> Event:
        pdu: dict[str, Any] = {
            "room_id": room_id,
            "sender": sender,
            "type": event_type,
            "content": content,
            "prev_events": prev_events,
            "auth_events": auth_events,
            "depth": depth,
            "origin_server_ts": origin_server_ts,
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        pdu = add_content_hash(pdu)
        pdu = signing.sign_event(
            pdu, room_version=room_version, server_name=self.server_name, signing_key=self.key
        )
        return Event(pdu, room_version, compute_event_id(pdu, room_version))

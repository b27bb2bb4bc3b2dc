"""A tiny room builder for auth-rule tests: PDUs with made-up but well-formed IDs.

No hashes or signatures: event IDs are passed explicitly, the way the CLI does.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from dagcore.protocol.auth_rules import auth_types_for_event, check_event_auth
from dagcore.protocol.events import Event
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion

ALICE = "@alice:a.test"
BOB = "@bob:b.test"
CAROL = "@carol:c.test"
DAVE = "@dave:a.test"

_counter = itertools.count(1)

State = dict[tuple[str, str], Event]


def _domain(user_id: str) -> str:
    return user_id.split(":", 1)[1]


class Room:
    """A room's linear history; ``state`` is the state after the last added event."""

    def __init__(
        self,
        version: str,
        *,
        creator: str = ALICE,
        create_content: dict[str, Any] | None = None,
    ) -> None:
        self.version: RoomVersion = KNOWN_ROOM_VERSIONS[version]
        self.creator = creator
        self.state: State = {}
        self.events: dict[str, Event] = {}
        self.last: str | None = None
        content: dict[str, Any] = {"room_version": version}
        if not self.version.implicit_room_creator:
            content["creator"] = creator
        content.update(create_content or {})
        if self.version.room_id_is_create_event_hash:
            self.room_id = ""
        else:
            self.room_id = f"!room{next(_counter)}:{_domain(creator)}"
        # Not checked here: tests build deliberately broken create events.
        self.create = self.make("m.room.create", creator, content, state_key="")
        self.apply(self.create)

    # -- building ---------------------------------------------------------------

    def new_event_id(self, sender: str) -> str:
        n = next(_counter)
        if self.version.event_format is EventFormat.V1:
            return f"${n}:{_domain(sender)}"
        digest = hashlib.sha256(str(n).encode()).hexdigest()[:43]
        return "$" + digest

    def _refs(self, ids: list[str]) -> list[Any]:
        if self.version.event_format is EventFormat.V1:
            return [[i, {"sha256": "aGFzaA"}] for i in ids]
        return list(ids)

    def make(
        self,
        event_type: str,
        sender: str,
        content: dict[str, Any],
        *,
        state_key: str | None = None,
        prev_events: list[str] | None = None,
        auth_events: list[str] | None = None,
        event_id: str | None = None,
        extra: dict[str, Any] | None = None,
        state: State | None = None,
    ) -> Event:
        """Build (but do not add) an event against ``state`` (default: current state)."""
        state = self.state if state is None else state
        if prev_events is None:
            prev_events = [self.last] if self.last else []
        if auth_events is None:
            keys = auth_types_for_event(
                self.version, event_type=event_type, state_key=state_key, sender=sender, content=content
            )
            auth_events = [state[k].event_id for k in keys if k in state]
        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "prev_events": self._refs(prev_events),
            "auth_events": self._refs(auth_events),
            "depth": len(self.events) + 1,
            "origin_server_ts": 1_700_000_000_000 + len(self.events),
        }
        is_create = event_type == "m.room.create" and not self.events
        if not (is_create and self.version.room_id_is_create_event_hash):
            pdu["room_id"] = self.room_id
        if state_key is not None:
            pdu["state_key"] = state_key
        if extra:
            pdu.update(extra)
        event_id = event_id or self.new_event_id(sender)
        if self.version.event_format is EventFormat.V1:
            pdu["event_id"] = event_id
        return Event(pdu, self.version, event_id=event_id)

    def add(self, event_type: str, sender: str, content: dict[str, Any], **kwargs: Any) -> Event:
        """Build an event, require that it passes auth against the current state, apply it."""
        event = self.make(event_type, sender, content, **kwargs)
        check_event_auth(event, self.state)
        self.apply(event)
        return event

    def apply(self, event: Event) -> None:
        if event.type == "m.room.create" and self.version.room_id_is_create_event_hash:
            self.room_id = event.room_id
        self.events[event.event_id] = event
        self.last = event.event_id
        if event.state_key is not None:
            self.state[(event.type, event.state_key)] = event

    # -- common steps -------------------------------------------------------------

    def join(self, user: str, **content: Any) -> Event:
        return self.add("m.room.member", user, {"membership": "join", **content}, state_key=user)

    def member(self, sender: str, target: str, membership: str, **content: Any) -> Event:
        return self.add("m.room.member", sender, {"membership": membership, **content}, state_key=target)

    def power_levels(self, content: dict[str, Any], sender: str | None = None) -> Event:
        return self.add("m.room.power_levels", sender or self.creator, content, state_key="")

    def join_rule(self, rule: str, sender: str | None = None, **extra: Any) -> Event:
        return self.add(
            "m.room.join_rules", sender or self.creator, {"join_rule": rule, **extra}, state_key=""
        )


def standard_room(
    version: str,
    *,
    join_rule: str = "public",
    users: dict[str, int] | None = None,
    creator: str = ALICE,
    create_content: dict[str, Any] | None = None,
    **power: Any,
) -> Room:
    """create, creator join, power levels (creator 100 in v1-v11), join rules."""
    room = Room(version, creator=creator, create_content=create_content)
    room.join(creator)
    levels: dict[str, Any] = {"users": {} if room.version.privileged_creators else {creator: 100}}
    levels["users"].update(users or {})
    levels.update(power)
    room.power_levels(levels)
    room.join_rule(join_rule)
    return room


def auth_state(room: Room, event: Event) -> State:
    """The state formed by the event's own auth events (plus the v12 create event)."""
    state: State = {}
    for event_id in event.auth_event_ids:
        auth_event = room.events[event_id]
        assert auth_event.state_key is not None
        state[(auth_event.type, auth_event.state_key)] = auth_event
    if room.version.room_id_is_create_event_hash:
        state[("m.room.create", "")] = room.create
    return state


ALL_VERSIONS = [str(n) for n in range(1, 13)]

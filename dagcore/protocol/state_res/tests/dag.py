"""A DAG builder for state resolution tests: rooms, forks, events with chosen IDs.

Each :class:`Fork` is a line of history with its own state. An event sent on a fork
cites the fork's heads as ``prev_events`` and, as ``auth_events``, what the auth events
selection picks from the fork's state (``auth_types_for_event``). It is checked against
that state with the real auth rules, so a test cannot build a DAG no server would accept
(pass ``check=False`` to build one anyway). ``fork.copy()`` branches; forks never merge
here — merging is what state resolution is for.
"""

from __future__ import annotations

import itertools
from typing import Any

from dagcore.protocol.auth_rules import AuthError, auth_types_for_event, check_event_auth
from dagcore.protocol.events import Event, StateKey
from dagcore.protocol.room_versions import RoomVersion, get_room_version
from dagcore.protocol.state_res import InMemoryStateResStore, resolve_state

ALICE = "@alice:a.test"
BOB = "@bob:b.test"
CAROL = "@carol:c.test"
DAVE = "@dave:d.test"
EVE = "@eve:e.test"

CREATE: StateKey = ("m.room.create", "")
PL: StateKey = ("m.room.power_levels", "")
JR: StateKey = ("m.room.join_rules", "")
TOPIC: StateKey = ("m.room.topic", "")


def member(user_id: str) -> StateKey:
    return ("m.room.member", user_id)


class Room:
    """All events of one room, and the clock their ``origin_server_ts`` come from."""

    def __init__(
        self,
        version: str,
        *,
        creator: str = ALICE,
        create_id: str = "$create",
        create_content: dict[str, Any] | None = None,
        ts: int = 1_000,
    ) -> None:
        self.version: RoomVersion = get_room_version(version)
        self.creator = creator
        self.events: dict[str, Event] = {}
        self._ids = itertools.count(1)
        self._clock = itertools.count(ts, 10)
        if self.version.room_id_is_create_event_hash:
            self.room_id = "!" + create_id[1:]
        else:
            self.room_id = "!room:" + creator.split(":", 1)[1]
        content: dict[str, Any] = {"room_version": version}
        if not self.version.implicit_room_creator:
            content["creator"] = creator
        content.update(create_content or {})
        pdu: dict[str, Any] = {
            "type": "m.room.create",
            "state_key": "",
            "sender": creator,
            "content": content,
            "prev_events": [],
            "auth_events": [],
            "depth": 1,
            "origin_server_ts": next(self._clock),
        }
        if not self.version.room_id_is_create_event_hash:
            pdu["room_id"] = self.room_id
        self.create = self.add(pdu, create_id)

    def add(self, pdu: dict[str, Any], event_id: str) -> Event:
        event = Event(pdu, self.version, event_id=event_id)
        self.keep(event)
        return event

    def keep(self, event: Event) -> None:
        assert event.event_id not in self.events, f"duplicate event id {event.event_id}"
        self.events[event.event_id] = event

    def next_id(self) -> str:
        return f"$e{next(self._ids):04d}"

    def tick(self) -> int:
        return next(self._clock)

    def root(self) -> Fork:
        """A fork holding just the create event."""
        fork = Fork(self)
        fork.state[CREATE] = self.create.event_id
        fork.heads = [self.create.event_id]
        return fork

    def store(self) -> InMemoryStateResStore:
        return InMemoryStateResStore(self.events)

    def resolve(self, *forks: Fork, explain: Any = None) -> dict[StateKey, str]:
        return resolve_state(self.version, [f.state for f in forks], self.store(), explain=explain)


class Fork:
    def __init__(self, room: Room) -> None:
        self.room = room
        self.state: dict[StateKey, str] = {}
        self.heads: list[str] = []

    def copy(self) -> Fork:
        fork = Fork(self.room)
        fork.state = dict(self.state)
        fork.heads = list(self.heads)
        return fork

    def state_events(self) -> dict[StateKey, Event]:
        return {key: self.room.events[eid] for key, eid in self.state.items()}

    def send(
        self,
        event_type: str,
        sender: str,
        content: dict[str, Any],
        *,
        state_key: str | None = "",
        event_id: str | None = None,
        ts: int | None = None,
        check: bool = True,
    ) -> Event:
        room = self.room
        version = room.version
        keys = auth_types_for_event(
            version, event_type=event_type, state_key=state_key, sender=sender, content=content
        )
        auth_events = [self.state[key] for key in keys if key in self.state]
        depth = 1 + max(room.events[h].depth for h in self.heads)
        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "room_id": room.room_id,
            "prev_events": list(self.heads),
            "auth_events": auth_events,
            "depth": depth,
            "origin_server_ts": room.tick() if ts is None else ts,
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        event = Event(pdu, version, event_id=event_id or room.next_id())
        if check:
            # The rules read only the selected keys and the create event.
            needed = [CREATE, *keys]
            check_event_auth(event, {k: room.events[self.state[k]] for k in needed if k in self.state})
        room.keep(event)
        if state_key is not None:
            self.state[(event_type, state_key)] = event.event_id
        self.heads = [event.event_id]
        return event

    def try_send(self, *args: Any, **kwargs: Any) -> Event | None:
        """Like :meth:`send`, but an event the auth rules reject is dropped (returns None)."""
        try:
            return self.send(*args, **kwargs)
        except AuthError:
            return None

    # -- shorthands ------------------------------------------------------------

    def join(self, user: str, **kw: Any) -> Event:
        return self.send("m.room.member", user, {"membership": "join"}, state_key=user, **kw)

    def leave(self, user: str, **kw: Any) -> Event:
        return self.send("m.room.member", user, {"membership": "leave"}, state_key=user, **kw)

    def ban(self, sender: str, target: str, **kw: Any) -> Event:
        return self.send("m.room.member", sender, {"membership": "ban"}, state_key=target, **kw)

    def kick(self, sender: str, target: str, **kw: Any) -> Event:
        return self.send("m.room.member", sender, {"membership": "leave"}, state_key=target, **kw)

    def invite(self, sender: str, target: str, **kw: Any) -> Event:
        return self.send("m.room.member", sender, {"membership": "invite"}, state_key=target, **kw)

    def power_levels(self, sender: str, users: dict[str, int], **kw: Any) -> Event:
        content = {"users": users, **kw.pop("extra", {})}
        return self.send("m.room.power_levels", sender, content, **kw)

    def join_rule(self, sender: str, rule: str, **kw: Any) -> Event:
        return self.send("m.room.join_rules", sender, {"join_rule": rule}, **kw)

    def topic(self, sender: str, topic: str, **kw: Any) -> Event:
        return self.send("m.room.topic", sender, {"topic": topic}, **kw)


def new_room(
    version: str,
    *,
    admins: dict[str, int] | None = None,
    members: tuple[str, ...] = (),
    join_rule: str = "public",
    create_content: dict[str, Any] | None = None,
    pl_extra: dict[str, Any] | None = None,
) -> tuple[Room, Fork]:
    """Alice creates a room, sets power levels (``admins``; in v12 the creator is not
    listed), the join rule, and ``members`` join. Returns the room and its main fork."""
    room = Room(version, create_content=create_content)
    fork = room.root()
    fork.join(ALICE, event_id="$alice_join")
    users = dict(admins or {})
    if not room.version.privileged_creators:
        users.setdefault(ALICE, 100)
    fork.power_levels(ALICE, users, event_id="$pl0", extra=pl_extra or {})
    fork.join_rule(ALICE, join_rule, event_id="$jr0")
    for user in members:
        fork.join(user, event_id=f"$join_{user[1:].split(':')[0]}")
    return room, fork


def make_event(
    event_id: str,
    event_type: str = "m.room.topic",
    *,
    state_key: str | None = "",
    sender: str = ALICE,
    auth: tuple[str, ...] = (),
    ts: int = 0,
    content: dict[str, Any] | None = None,
    version: str = "10",
) -> Event:
    """A bare event with chosen auth events, for the single-step tests (no auth rules run)."""
    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": sender,
        "content": content or {},
        "room_id": "!room:a.test",
        "prev_events": [],
        "auth_events": list(auth),
        "depth": 1,
        "origin_server_ts": ts,
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    return Event(pdu, get_room_version(version), event_id=event_id)


def event_map(*events: Event) -> dict[str, Event]:
    return {e.event_id: e for e in events}

"""A room as the tests of the event pipeline look at it: its current state, its forward
extremities, and remote events built on them (``RemoteServer``) to feed the pipeline."""

from __future__ import annotations

from typing import Any

from dagcore.protocol.auth_rules import auth_types_for_event
from dagcore.protocol.events import Event
from dagcore.protocol.room_versions import get_room_version
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from tests.support.events import RemoteServer


def current_state_ids(room_id: str) -> dict[tuple[str, str], str]:
    """The room's current state: ``(type, state_key) -> event ID``."""
    room = room_store.get_room(room_id)
    assert room is not None
    nids = state_store.get_current_state_ids(room)
    ids = event_store.get_event_ids_for_nids(nids.values())
    return {k: ids[n] for k, n in nids.items()}


def forward_extremities(room_id: str) -> list[str]:
    """The IDs of the room's forward extremities, sorted."""
    room = room_store.get_room(room_id)
    assert room is not None
    return sorted(e.event_id for e in event_store.get_forward_extremities(room))


def remote_event(
    remote: RemoteServer,
    room_id: str,
    sender: str,
    event_type: str,
    content: dict[str, Any],
    *,
    state_key: str | None = None,
    prev: list[str] | None = None,
    state: dict[tuple[str, str], str] | None = None,
    auth: list[str] | None = None,
) -> Event:
    """An event of ``remote`` on ``prev`` (default: the forward extremities), its auth events
    ``auth`` or else chosen from ``state`` (default: the current state) by the auth rules."""
    room = room_store.get_room(room_id)
    assert room is not None
    version = get_room_version(room.room_version)
    state = state if state is not None else current_state_ids(room_id)
    keys = auth_types_for_event(
        version, event_type=event_type, state_key=state_key, sender=sender, content=content
    )
    prev = prev if prev is not None else forward_extremities(room_id)
    depth = max(s.depth for s in event_store.get_events_by_ids(prev).values()) + 1
    auth_ids = auth if auth is not None else [state[k] for k in keys if k in state]
    return remote.event(version, room_id=room_id, sender=sender, event_type=event_type, content=content,
                        state_key=state_key, prev_events=prev, auth_events=auth_ids, depth=depth)  # fmt: skip

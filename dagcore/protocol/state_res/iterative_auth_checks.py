"""The iterative auth checks (steps 2 and 4 of the algorithm).

Spec: https://spec.matrix.org/v1.19/rooms/v2/#definitions ("Iterative auth checks"):
take the events in order; check each against the authorization rules; apply it to the
state if it passes and ignore it if it fails. A ``(type, state_key)`` the rules need
that the state lacks is taken from the event's own ``auth_events``, unless that auth
event was rejected ("Rejected auth events are deliberately excluded").

The state is layered — the partially resolved entries over a read-only base — so the
10,000-entry unconflicted map of a big room (the v2 base) is never copied; the checks
only ever look up the handful of keys :func:`auth_types_for_event` names. v2.1 starts
from an empty base, and the auth events carry the history instead (MSC4297).

In v12 events do not list the create event: the room ID names it
(``Event.create_event_id_for_v12``), and the rules need it in the state they read.

Every event is re-checked, including one the store marks as rejected: the spec handles
events "rejected due to failing auth based on the state at the event ... as usual", and
this core cannot tell that from a rejection against the event's own auth events (those
should never reach state resolution). Synapse instead keeps any rejected event out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from dagcore.protocol.auth_rules import AuthError, auth_types_for_event, check_event_auth
from dagcore.protocol.events import Event, StateKey
from dagcore.protocol.room_versions import RoomVersion
from dagcore.protocol.state_res.store import EventFetcher

CREATE_KEY: StateKey = ("m.room.create", "")

#: Called once per event: ``(event, None)`` when applied, ``(event, error)`` when rejected.
Outcome = Callable[[Event, AuthError | None], None]


def auth_state_for(
    event: Event,
    room_version: RoomVersion,
    partial_state: Mapping[StateKey, str],
    base_state: Mapping[StateKey, str],
    fetcher: EventFetcher,
) -> dict[StateKey, Event]:
    """The state ``event`` is checked against: its non-rejected auth events, overridden by
    the (partially resolved, then base) state for every key the rules need."""
    auth_state: dict[StateKey, Event] = {}
    for aid in event.auth_event_ids:
        auth_event = fetcher.get(aid)
        if auth_event is not None and auth_event.state_key is not None and auth_event.rejected_reason is None:
            auth_state[(auth_event.type, auth_event.state_key)] = auth_event
    for key in auth_types_for_event(
        room_version,
        event_type=event.type,
        state_key=event.state_key,
        sender=event.sender,
        content=event.content,
    ):
        state_event_id = partial_state.get(key) or base_state.get(key)
        if state_event_id is not None:
            state_event = fetcher.get(state_event_id)
            if state_event is not None:
                auth_state[key] = state_event
    if room_version.room_id_is_create_event_hash:
        # v12: the room ID names the create event; no auth event or state entry can
        # stand in for it (the rules reject an event whose create event is not that one).
        create = fetcher.get(event.create_event_id_for_v12())
        if create is not None:
            auth_state[CREATE_KEY] = create
        else:
            auth_state.pop(CREATE_KEY, None)
    return auth_state


def iterative_auth_checks(
    room_version: RoomVersion,
    event_ids: Sequence[str],
    *,
    base_state: Mapping[StateKey, str],
    partial_state: dict[StateKey, str],
    fetcher: EventFetcher,
    on_outcome: Outcome | None = None,
) -> dict[StateKey, str]:
    """Apply the events of ``event_ids`` that pass the auth rules to ``partial_state``.

    ``partial_state`` (updated in place and returned) overrides ``base_state``; only
    ``partial_state`` changes.
    """
    events = fetcher.events
    _prefetch(room_version, event_ids, base_state, fetcher)
    for eid in event_ids:
        event = events[eid]
        if event.state_key is None:
            continue
        auth_state = auth_state_for(event, room_version, partial_state, base_state, fetcher)
        try:
            check_event_auth(event, auth_state)
        except AuthError as exc:
            if on_outcome is not None:
                on_outcome(event, exc)
            continue
        partial_state[(event.type, event.state_key)] = eid
        if on_outcome is not None:
            on_outcome(event, None)
    return partial_state


def _prefetch(
    room_version: RoomVersion,
    event_ids: Sequence[str],
    base_state: Mapping[StateKey, str],
    fetcher: EventFetcher,
) -> None:
    """Fetch, in one batch, every auth event and base-state event the checks will read."""
    events = fetcher.events
    wanted: set[str] = set()
    for eid in event_ids:
        event = events[eid]
        wanted.update(event.auth_event_ids)
        if room_version.room_id_is_create_event_hash:
            wanted.add(event.create_event_id_for_v12())
        for key in auth_types_for_event(
            room_version,
            event_type=event.type,
            state_key=event.state_key,
            sender=event.sender,
            content=event.content,
        ):
            state_event_id = base_state.get(key)
            if state_event_id is not None:
                wanted.add(state_event_id)
    fetcher.fetch(wanted)

"""Power events and their reverse topological power ordering (step 1 of the algorithm).

Spec: https://spec.matrix.org/v1.19/rooms/v2/#definitions ("Power events", "Reverse
topological power ordering") and step 1 of https://spec.matrix.org/v1.19/rooms/v2/#algorithm.

The ordering is Kahn's algorithm over the auth-event DAG of the selected events, taking
at each step the smallest ready event by: *greater* sender power level (read from the
event's own ``auth_events``, not from any resolved state), then smaller
``origin_server_ts``, then smaller ``event_id``.

Which events are selected: the power events of the full conflicted set, enlarged with
the events of their auth chains that are in the full conflicted set. We collect those by
walking ``auth_events`` edges *within* the full conflicted set — as Synapse and ruma do.
It differs from intersecting the whole auth chain only when a path leaves the full
conflicted set and re-enters it, which needs a conflicted state event that is an ancestor
of an event every state set's auth chain contains; agreeing with the deployed servers
there is what keeps the room's state converging. The sort uses the same edges.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection

from dagcore.protocol.auth_rules import get_user_power_level
from dagcore.protocol.events import Event, StateKey
from dagcore.protocol.state_res.store import AuthChainCycle, EventFetcher

CREATE_KEY: StateKey = ("m.room.create", "")
POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")


def is_power_event(event: Event) -> bool:
    """``m.room.power_levels``, ``m.room.join_rules``, or a kick/ban/unban of someone else."""
    if event.state_key is None:
        return False
    if event.type in ("m.room.power_levels", "m.room.join_rules"):
        return event.state_key == ""
    if event.type == "m.room.member":
        return event.membership in ("leave", "ban") and event.sender != event.state_key
    return False


class SenderPowerLevels:
    """Memoised "power level of the sender, when looking at the event's auth_events".

    Only the ``m.room.power_levels`` and ``m.room.create`` auth events matter (the
    create event gives v1-v11 creators 100 when there is no power levels event, and makes
    v12 creators infinitely powerful). In v12 the create event is not an auth event; the
    room ID names it.
    """

    __slots__ = ("_fetcher", "_memo")

    def __init__(self, fetcher: EventFetcher) -> None:
        self._fetcher = fetcher
        self._memo: dict[str, int | float] = {}

    def __call__(self, event: Event) -> int | float:
        level = self._memo.get(event.event_id)
        if level is None:
            level = get_user_power_level(event.sender, power_state_of(event, self._fetcher))
            self._memo[event.event_id] = level
        return level

    def prefetch(self, events: Collection[Event]) -> None:
        """Fetch the auth events (and v12 create events) of ``events`` in one batch."""
        wanted: set[str] = set()
        for event in events:
            wanted.update(event.auth_event_ids)
            if event.room_version.room_id_is_create_event_hash:
                wanted.add(event.create_event_id_for_v12())
        self._fetcher.fetch(wanted)


def power_state_of(event: Event, fetcher: EventFetcher) -> dict[StateKey, Event]:
    """The create and power levels events among ``event``'s auth events (v12: create by room ID)."""
    v12 = event.room_version.room_id_is_create_event_hash
    state: dict[StateKey, Event] = {}
    for aid in event.auth_event_ids:
        auth_event = fetcher.get(aid)
        if auth_event is not None and auth_event.state_key == "":
            key = (auth_event.type, "")
            if key == POWER_LEVELS_KEY or (key == CREATE_KEY and not v12):
                state[key] = auth_event
    if v12:
        create = fetcher.get(event.create_event_id_for_v12())
        if create is not None and create.type == "m.room.create" and create.state_key == "":
            state[CREATE_KEY] = create
    return state


def select_power_events(full_conflicted_set: Collection[str], fetcher: EventFetcher) -> set[str]:
    """Step 1's set *X*: the power events of the full conflicted set plus the events of
    the full conflicted set reachable from them through ``auth_events`` inside that set."""
    events = fetcher.events
    selected = {
        eid for eid in full_conflicted_set if (ev := events.get(eid)) is not None and is_power_event(ev)
    }
    stack = list(selected)
    while stack:
        event = events[stack.pop()]
        for aid in event.auth_event_ids:
            if aid in full_conflicted_set and aid not in selected and aid in events:
                selected.add(aid)
                stack.append(aid)
    return selected


def reverse_topological_power_ordering(
    event_ids: Collection[str],
    fetcher: EventFetcher,
    power_level: Callable[[Event], int | float],
) -> list[str]:
    """Sort ``event_ids`` earliest first: auth events before the events they authorise,
    ties broken by higher sender power, then lower ``origin_server_ts``, then ``event_id``."""
    events = fetcher.events
    members = set(event_ids)
    waiting_on: dict[str, int] = {}
    authorises: dict[str, list[str]] = {}
    ready: list[tuple[int | float, int, str]] = []
    for eid in members:
        event = events[eid]
        # A PDU listing an auth event twice has still one edge to it.
        inside = {aid for aid in event.auth_event_ids if aid in members}
        for aid in inside:
            authorises.setdefault(aid, []).append(eid)
        if inside:
            waiting_on[eid] = len(inside)
        else:
            ready.append((-power_level(event), event.origin_server_ts, eid))
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        eid = heapq.heappop(ready)[2]
        ordered.append(eid)
        for child in authorises.get(eid, ()):
            left = waiting_on[child] - 1
            waiting_on[child] = left
            if left == 0:
                event = events[child]
                heapq.heappush(ready, (-power_level(event), event.origin_server_ts, child))
    if len(ordered) != len(members):
        # Only a cycle in auth_events leaves events waiting; a valid room has none.
        raise AuthChainCycle("auth_events among the power events form a cycle")
    return ordered

"""State resolution v2 (room versions 2-11) and v2.1 (room version 12).

Spec: https://spec.matrix.org/v1.19/rooms/v2/#state-resolution ("Algorithm"),
https://spec.matrix.org/v1.19/rooms/v12/#state-resolution (v2.1, MSC4297) and
https://spec.matrix.org/v1.19/server-server-api/#room-state-resolution.

One module per step of the spec:

* :mod:`.unconflicted` — the unconflicted state map and the conflicted state set;
* :mod:`.auth_difference` — the auth difference (answered by the store's index);
* :mod:`.conflicted_subgraph` — v2.1: events on auth paths between conflicted events;
* :mod:`.reverse_topological_power_ordering` — step 1;
* :mod:`.iterative_auth_checks` — steps 2 and 4;
* :mod:`.mainline_ordering` — step 3.

v2.1 differs from v2 in exactly two places, both visible in :func:`resolve_state`: the
full conflicted set also holds the conflicted state subgraph, and step 2 starts from an
empty state map instead of the unconflicted state map (so the mainline of step 3 is
built from a power levels event that step 2 applied, if any). Step 5 puts the
unconflicted state back in both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from dagcore.protocol.events import StateKey, StateMap
from dagcore.protocol.room_versions import RoomVersion, StateResAlgorithm
from dagcore.protocol.state_res.auth_difference import auth_difference
from dagcore.protocol.state_res.conflicted_subgraph import conflicted_subgraph
from dagcore.protocol.state_res.explain import MAINLINE_PHASE, POWER_PHASE, Explanation
from dagcore.protocol.state_res.iterative_auth_checks import iterative_auth_checks
from dagcore.protocol.state_res.mainline_ordering import NOT_ON_MAINLINE, mainline_ordering
from dagcore.protocol.state_res.reverse_topological_power_ordering import (
    SenderPowerLevels,
    reverse_topological_power_ordering,
    select_power_events,
)
from dagcore.protocol.state_res.store import (
    AuthChainCycle,
    EventFetcher,
    InMemoryStateResStore,
    MissingEvents,
    StateResolutionError,
    StateResStore,
)
from dagcore.protocol.state_res.unconflicted import separate

__all__ = [
    "AuthChainCycle",
    "InMemoryStateResStore",
    "MissingEvents",
    "StateResStore",
    "StateResolutionError",
    "UnsupportedStateResolution",
    "resolve_state",
]

POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")


class UnsupportedStateResolution(StateResolutionError):
    """The room version uses an algorithm this server does not implement (v1)."""


def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[StateMap],
    store: StateResStore,
    *,
    explain: Callable[[str], None] | None = None,
) -> dict[StateKey, str]:
    """Resolve ``state_sets`` into one state map, per the room version's algorithm.

    ``store`` must know every event the conflicted keys name (else :class:`MissingEvents`)
    and should know their auth chains; auth-difference events it lacks are left out. With
    ``explain``, each line of an account of the resolution is passed to it.
    """
    algorithm = room_version.state_res
    if algorithm not in (StateResAlgorithm.V2, StateResAlgorithm.V2_1):
        raise UnsupportedStateResolution(
            f"room version {room_version.identifier} uses state resolution {algorithm.value}, which is not supported"
        )
    v2_1 = algorithm is StateResAlgorithm.V2_1
    why = Explanation(explain) if explain is not None else None

    unconflicted, conflicted = separate(state_sets)
    if not conflicted:
        if why is not None:
            why.line(
                f"state resolution {algorithm.value} (room version {room_version.identifier}): "
                f"{len(state_sets)} state set(s) agree on all {len(unconflicted)} keys; nothing to resolve"
            )
        return unconflicted

    fetcher = EventFetcher(store)
    conflicted_ids: set[str] = set().union(*conflicted.values())
    fetcher.fetch(conflicted_ids)
    if fetcher.missing:
        raise MissingEvents(fetcher.missing & conflicted_ids)

    # The full conflicted set: the conflicted state set, the auth difference and, in v2.1,
    # the conflicted state subgraph.
    difference = auth_difference(state_sets, store)
    full_conflicted_set = conflicted_ids | difference
    subgraph: set[str] = set()
    if v2_1:
        subgraph = conflicted_subgraph(conflicted_ids, fetcher)
        full_conflicted_set |= subgraph
    fetcher.fetch(full_conflicted_set)
    events = fetcher.events
    # Auth chains can only hold state events; anything else (or unknown) cannot be replayed.
    unusable = {eid for eid in full_conflicted_set if (ev := events.get(eid)) is None or ev.state_key is None}
    full_conflicted_set -= unusable
    _check_one_room(full_conflicted_set, fetcher)

    if why is not None:
        why.line(
            f"state resolution {algorithm.value} (room version {room_version.identifier}): "
            f"{len(state_sets)} state sets; {len(unconflicted)} unconflicted keys; "
            f"{len(conflicted)} conflicted keys ({len(conflicted_ids)} events); "
            f"auth difference {len(difference)} events"
            + (
                f"; conflicted state subgraph {len(subgraph)} events "
                f"({len(subgraph - conflicted_ids - difference)} not otherwise in the full conflicted set)"
                if v2_1
                else ""
            )
            + f"; full conflicted set {len(full_conflicted_set)} events"
        )
        if unusable:
            why.line(
                f"left out {len(unusable)} event(s) the store does not have or that are not state events: "
                f"{sorted(unusable)}"
            )

    # Step 1: the power events (and their conflicted auth ancestors), reverse topological
    # power ordering.
    power_ids = select_power_events(full_conflicted_set, fetcher)
    power_level = SenderPowerLevels(fetcher)
    power_level.prefetch([events[eid] for eid in power_ids])
    power_order = reverse_topological_power_ordering(power_ids, fetcher, power_level)

    # Step 2: iterative auth checks from the unconflicted state map (v2) or empty (v2.1).
    base_state: StateMap = {} if v2_1 else unconflicted
    on_outcome = why.outcome if why is not None else None
    if why is not None:
        why.ordered(
            POWER_PHASE,
            power_order,
            lambda eid: (
                f"sender power {_level(power_level(events[eid]))}, "
                f"origin_server_ts {events[eid].origin_server_ts}"
            ),
        )
        why.line(
            f"step 1-2: {len(power_order)} power event(s) replayed in reverse topological power ordering "
            + ("from an empty state map" if v2_1 else "over the unconflicted state map")
        )
    partial_state = iterative_auth_checks(
        room_version,
        power_order,
        base_state=base_state,
        partial_state={},
        fetcher=fetcher,
        on_outcome=on_outcome,
    )

    # Step 3: everything else, by mainline ordering of the partially resolved power levels.
    power_levels_id = partial_state.get(POWER_LEVELS_KEY) or base_state.get(POWER_LEVELS_KEY)
    rest_order, positions = mainline_ordering(full_conflicted_set - power_ids, power_levels_id, fetcher)
    if why is not None:

        def mainline_detail(eid: str) -> str:
            position = positions.position(events[eid])
            shown = "none (not on the mainline)" if position == NOT_ON_MAINLINE else str(position)
            return f"mainline position {shown}, origin_server_ts {events[eid].origin_server_ts}"

        why.ordered(MAINLINE_PHASE, rest_order, mainline_detail)
        if rest_order:
            why.line(
                f"step 3-4: {len(rest_order)} other event(s) replayed in mainline ordering based on "
                f"{power_levels_id or 'no power levels event'} (mainline length {len(positions.index)})"
            )
        else:
            why.line("step 3-4: no other events to replay")

    # Step 4: iterative auth checks on the partially resolved state.
    iterative_auth_checks(
        room_version,
        rest_order,
        base_state=base_state,
        partial_state=partial_state,
        fetcher=fetcher,
        on_outcome=on_outcome,
    )

    # Step 5: the unconflicted state map wins wherever it has the key. In v2 the base
    # layer *is* the unconflicted map, so this is the same as overlaying it last.
    result = dict(partial_state)
    result.update(unconflicted)

    if why is not None:
        why.summarise(
            conflicted=conflicted,
            unconflicted=unconflicted,
            partial_state=partial_state,
            result=result,
            events=events,
        )
    return result


def _level(level: int | float) -> str:
    return "infinite (room creator)" if level == math.inf else str(level)


def _check_one_room(event_ids: set[str], fetcher: EventFetcher) -> None:
    rooms = {fetcher.events[eid].room_id for eid in event_ids}
    if len(rooms) > 1:
        raise StateResolutionError(f"the state sets mix events of several rooms: {sorted(rooms)}")

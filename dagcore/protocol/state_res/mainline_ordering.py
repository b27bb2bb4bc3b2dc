"""Mainline ordering (step 3 of the algorithm).

Spec: https://spec.matrix.org/v1.19/rooms/v2/#definitions ("Mainline ordering") and step 3
of https://spec.matrix.org/v1.19/rooms/v2/#algorithm.

The *mainline* of a power levels event ``P0`` is ``[P0, P1, ..., Pn]``, each ``Pi+1`` the
``m.room.power_levels`` event among the ``auth_events`` of ``Pi``. The *mainline
position* of another event ``e`` is the index ``i`` of the first event of ``e``'s own
power-levels chain ``[e1, e2, ...]`` (``e`` itself excluded) that is on the mainline, or
∞ when none is. Events sort by *greater* position first (authorised by an older power
levels event), then smaller ``origin_server_ts``, then smaller ``event_id``.

Positions are memoised per power levels event, so the walk from many events that share
a power-levels history stops at the first event already placed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from dagcore.protocol.events import Event
from dagcore.protocol.state_res.store import EventFetcher

#: The spec's ∞: "a sentinel value greater than any integer".
NOT_ON_MAINLINE = math.inf


def power_levels_auth_event(event: Event, fetcher: EventFetcher) -> str | None:
    """The ``m.room.power_levels`` event among ``event``'s auth events, if any."""
    for aid in event.auth_event_ids:
        auth_event = fetcher.get(aid)
        if auth_event is not None and auth_event.type == "m.room.power_levels" and auth_event.state_key == "":
            return aid
    return None


def mainline_of(power_levels_event_id: str | None, fetcher: EventFetcher) -> list[str]:
    """``[P0, P1, ..., Pn]`` starting at the given power levels event (empty for None)."""
    mainline: list[str] = []
    seen: set[str] = set()
    current = power_levels_event_id
    while current is not None and current not in seen:
        seen.add(current)
        mainline.append(current)
        event = fetcher.get(current)
        current = power_levels_auth_event(event, fetcher) if event is not None else None
    return mainline


class MainlinePositions:
    """Mainline positions relative to one mainline, memoised per power levels event."""

    __slots__ = ("_fetcher", "_memo", "index")

    def __init__(self, mainline: list[str], fetcher: EventFetcher) -> None:
        self._fetcher = fetcher
        self.index: dict[str, int] = {eid: i for i, eid in enumerate(mainline)}
        self._memo: dict[str, int | float] = {}

    def position(self, event: Event) -> int | float:
        first = power_levels_auth_event(event, self._fetcher)
        return NOT_ON_MAINLINE if first is None else self._position_from(first)

    def _position_from(self, power_levels_event_id: str) -> int | float:
        """Index of the first event of ``[id, its PL auth event, ...]`` on the mainline."""
        index, memo = self.index, self._memo
        path: list[str] = []
        on_path: set[str] = set()
        current: str | None = power_levels_event_id
        result: int | float = NOT_ON_MAINLINE
        while current is not None:
            if current in index:
                result = index[current]
                break
            if current in memo:
                result = memo[current]
                break
            if current in on_path:
                break
            path.append(current)
            on_path.add(current)
            event = self._fetcher.get(current)
            current = power_levels_auth_event(event, self._fetcher) if event is not None else None
        for eid in path:
            memo[eid] = result
        return result


def mainline_ordering(
    event_ids: Iterable[str], power_levels_event_id: str | None, fetcher: EventFetcher
) -> tuple[list[str], MainlinePositions]:
    """Sort ``event_ids`` by the mainline ordering based on ``power_levels_event_id``.

    Returns the order and the positions (for explanations).
    """
    ids = list(event_ids)
    positions = MainlinePositions(mainline_of(power_levels_event_id, fetcher) if ids else [], fetcher)
    fetcher.fetch_auth_events_of(ids)
    events = fetcher.events
    keys = {}
    for eid in ids:
        event = events[eid]
        keys[eid] = (-positions.position(event), event.origin_server_ts, eid)
    ids.sort(key=keys.__getitem__)
    return ids, positions

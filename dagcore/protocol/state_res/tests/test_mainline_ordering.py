"""Step 3: mainline positions and the mainline ordering."""

from __future__ import annotations

import math

from dagcore.protocol.state_res.mainline_ordering import mainline_of, mainline_ordering
from dagcore.protocol.state_res.store import EventFetcher, InMemoryStateResStore

from .dag import event_map, make_event


def _fetcher():
    # $pl0 <- $pl1 <- $pl2 is the mainline of $pl2; $side branches off $pl0.
    return EventFetcher(
        InMemoryStateResStore(
            event_map(
                make_event("$create", "m.room.create"),
                make_event("$pl0", "m.room.power_levels", auth=("$create",)),
                make_event("$pl1", "m.room.power_levels", auth=("$create", "$pl0")),
                make_event("$pl2", "m.room.power_levels", auth=("$create", "$pl1")),
                make_event("$side", "m.room.power_levels", auth=("$create", "$pl0")),
                make_event("$side2", "m.room.power_levels", auth=("$create", "$side")),
            )
        )
    )


def _topic(event_id, *auth, ts=0):
    return make_event(event_id, auth=("$create", *auth), ts=ts)


def test_the_mainline_follows_power_levels_auth_events_back_to_the_first():
    assert mainline_of("$pl2", _fetcher()) == ["$pl2", "$pl1", "$pl0"]
    assert mainline_of(None, _fetcher()) == []


def test_events_authorised_by_older_power_levels_sort_first():
    fetcher = _fetcher()
    topics = [_topic("$t_pl2", "$pl2", ts=1), _topic("$t_pl0", "$pl0", ts=3), _topic("$t_pl1", "$pl1", ts=2)]
    fetcher.events.update(event_map(*topics))

    order, positions = mainline_ordering([t.event_id for t in topics], "$pl2", fetcher)

    assert order == ["$t_pl0", "$t_pl1", "$t_pl2"]
    assert [positions.position(fetcher.events[e]) for e in order] == [2, 1, 0]


def test_a_power_levels_branch_takes_the_position_where_it_meets_the_mainline():
    fetcher = _fetcher()
    topics = [_topic("$on_side", "$side2", ts=1), _topic("$on_pl1", "$pl1", ts=0)]
    fetcher.events.update(event_map(*topics))

    order, positions = mainline_ordering(["$on_pl1", "$on_side"], "$pl2", fetcher)

    assert positions.position(fetcher.events["$on_side"]) == 2  # $side2 -> $side -> $pl0
    assert order == ["$on_side", "$on_pl1"]


def test_events_without_power_levels_sort_first_then_by_timestamp_then_id():
    fetcher = _fetcher()
    topics = [
        _topic("$b", "$pl2", ts=5),
        _topic("$a", "$pl2", ts=5),
        _topic("$early", "$pl2", ts=1),
        _topic("$no_pl", ts=99),
    ]
    fetcher.events.update(event_map(*topics))

    order, positions = mainline_ordering([t.event_id for t in topics], "$pl2", fetcher)

    assert positions.position(fetcher.events["$no_pl"]) == math.inf
    assert order == ["$no_pl", "$early", "$a", "$b"]


def test_without_a_resolved_power_levels_event_every_position_is_infinite():
    fetcher = _fetcher()
    topics = [_topic("$x", "$pl2", ts=2), _topic("$y", "$pl0", ts=1)]
    fetcher.events.update(event_map(*topics))

    order, _ = mainline_ordering(["$x", "$y"], None, fetcher)

    assert order == ["$y", "$x"]

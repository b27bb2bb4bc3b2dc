"""Step 1: which events are power-sorted, and the reverse topological power ordering."""

from __future__ import annotations

from dagcore.protocol.state_res.reverse_topological_power_ordering import (
    SenderPowerLevels,
    is_power_event,
    reverse_topological_power_ordering,
    select_power_events,
)
from dagcore.protocol.state_res.store import EventFetcher, InMemoryStateResStore

from .dag import ALICE, BOB, CAROL, event_map, make_event

PL_CONTENT = {"users": {ALICE: 100, BOB: 50, CAROL: 50}}


def _room_events():
    create = make_event("$create", "m.room.create", content={"creator": ALICE})
    pl = make_event("$pl", "m.room.power_levels", auth=("$create",), content=PL_CONTENT)
    return [create, pl]


def _order(*events):
    fetcher = EventFetcher(InMemoryStateResStore(event_map(*_room_events(), *events)))
    ids = [e.event_id for e in events]
    fetcher.fetch(ids)
    return reverse_topological_power_ordering(ids, fetcher, SenderPowerLevels(fetcher))


def test_power_events_are_power_levels_join_rules_and_kicks_or_bans_of_others():
    assert is_power_event(make_event("$a", "m.room.power_levels"))
    assert is_power_event(make_event("$b", "m.room.join_rules"))
    kick = make_event("$c", "m.room.member", state_key=BOB, content={"membership": "leave"})
    ban = make_event("$d", "m.room.member", state_key=BOB, content={"membership": "ban"})
    leave = make_event("$e", "m.room.member", state_key=ALICE, content={"membership": "leave"})
    join = make_event("$f", "m.room.member", state_key=ALICE, content={"membership": "join"})
    assert is_power_event(kick) and is_power_event(ban)
    assert not is_power_event(leave) and not is_power_event(join)
    assert not is_power_event(make_event("$g", "m.room.topic"))


def test_auth_events_come_before_the_events_they_authorise_whatever_the_power():
    parent = make_event("$parent", "m.room.join_rules", sender=BOB, auth=("$create", "$pl"), ts=900)
    child = make_event("$child", "m.room.join_rules", sender=ALICE, auth=("$create", "$pl", "$parent"), ts=1)
    assert _order(child, parent) == ["$parent", "$child"]


def test_a_higher_powered_sender_goes_first_then_the_older_event_then_the_smaller_id():
    by_alice = make_event("$z_alice", "m.room.join_rules", sender=ALICE, auth=("$create", "$pl"), ts=500)
    by_bob_old = make_event("$y_bob", "m.room.join_rules", sender=BOB, auth=("$create", "$pl"), ts=100)
    by_carol_tie = make_event("$a_carol", "m.room.join_rules", sender=CAROL, auth=("$create", "$pl"), ts=100)
    by_bob_new = make_event("$b_bob", "m.room.join_rules", sender=BOB, auth=("$create", "$pl"), ts=200)

    assert _order(by_bob_new, by_carol_tie, by_bob_old, by_alice) == [
        "$z_alice",
        "$a_carol",
        "$y_bob",
        "$b_bob",
    ]


def test_power_is_read_from_the_events_own_auth_events_not_from_its_content():
    # Bob's power levels event makes Bob 100, but it is authorised by $pl, where he has 50.
    selfish = make_event(
        "$selfish",
        "m.room.power_levels",
        sender=BOB,
        auth=("$create", "$pl"),
        ts=1,
        content={"users": {ALICE: 100, BOB: 100}},
    )
    by_alice = make_event("$alice", "m.room.join_rules", sender=ALICE, auth=("$create", "$pl"), ts=2)
    assert _order(selfish, by_alice) == ["$alice", "$selfish"]


def test_the_creator_has_100_when_the_auth_events_hold_no_power_levels():
    fetcher = EventFetcher(InMemoryStateResStore(event_map(*_room_events())))
    early = make_event("$early", "m.room.join_rules", sender=ALICE, auth=("$create",))
    other = make_event("$other", "m.room.join_rules", sender=BOB, auth=("$create",))
    levels = SenderPowerLevels(fetcher)
    assert (levels(early), levels(other)) == (100, 0)


def test_selection_adds_the_conflicted_auth_ancestors_of_power_events():
    member = make_event(
        "$bob_join", "m.room.member", state_key=BOB, sender=BOB, content={"membership": "join"}
    )
    ban = make_event(
        "$ban",
        "m.room.member",
        state_key=CAROL,
        sender=BOB,
        auth=("$pl", "$bob_join"),
        content={"membership": "ban"},
    )
    topic = make_event("$topic", auth=("$pl", "$bob_join"))
    fetcher = EventFetcher(InMemoryStateResStore(event_map(*_room_events(), member, ban, topic)))
    full = {"$bob_join", "$ban", "$topic"}
    fetcher.fetch(full)
    # $bob_join is a conflicted auth event of the ban; $topic is not a power event; $pl
    # is an auth event of the ban but not in the full conflicted set.
    assert select_power_events(full, fetcher) == {"$ban", "$bob_join"}

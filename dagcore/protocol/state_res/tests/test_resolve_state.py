"""Resolution scenarios, for state res v2 (room versions 10, 11) and v2.1 (room version 12)."""

from __future__ import annotations

import pytest

from dagcore.protocol.room_versions import get_room_version
from dagcore.protocol.state_res import (
    InMemoryStateResStore,
    MissingEvents,
    UnsupportedStateResolution,
    resolve_state,
)

from .dag import ALICE, BOB, CAROL, DAVE, EVE, JR, PL, TOPIC, Room, member, new_room

ALL_VERSIONS = ["10", "11", "12"]
V2_VERSIONS = ["10", "11"]


def admin_users(room: Room, **levels: int) -> dict[str, int]:
    """A power levels ``users`` map: Alice at 100 before v12 (where creators are unlisted)."""
    users = {} if room.version.privileged_creators else {ALICE: 100}
    users.update({_USERS[name]: level for name, level in levels.items()})
    return users


_USERS = {"bob": BOB, "carol": CAROL, "dave": DAVE, "eve": EVE}


# -- bans, kicks and power ------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_ban_outranks_a_concurrent_join(version):
    room, main = new_room(version)
    banned, joined = main.copy(), main.copy()
    banned.ban(ALICE, EVE, event_id="$ban")
    joined.join(EVE, event_id="$eve_joins")

    resolved = room.resolve(banned, joined)

    assert resolved[member(EVE)] == "$ban"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_demotion_outranks_the_demoted_moderators_concurrent_ban(version):
    room, main = new_room(version, admins={BOB: 50}, members=(BOB, CAROL))
    moderating, demoting = main.copy(), main.copy()
    # Bob's ban is older: only the sender's power puts Alice's demotion first.
    moderating.ban(BOB, CAROL, event_id="$bob_bans_carol")
    demoting.power_levels(ALICE, admin_users(room, bob=0), event_id="$demote_bob")

    resolved = room.resolve(moderating, demoting)

    assert resolved[PL] == "$demote_bob"
    assert resolved[member(CAROL)] == "$join_carol"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_power_events_by_a_concurrently_demoted_user_are_rejected(version):
    room, main = new_room(version, admins={BOB: 50}, members=(BOB, CAROL))
    rogue, demoting = main.copy(), main.copy()
    rogue.join_rule(BOB, "invite", event_id="$bob_closes_room")
    rogue.kick(BOB, CAROL, event_id="$bob_kicks_carol")
    demoting.power_levels(ALICE, admin_users(room, bob=0), event_id="$demote_bob")

    resolved = room.resolve(rogue, demoting)

    assert resolved[PL] == "$demote_bob"
    assert resolved[JR] == "$jr0"
    assert resolved[member(CAROL)] == "$join_carol"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_join_under_public_rules_loses_to_a_concurrent_switch_to_invite_only(version):
    room, main = new_room(version, members=(BOB,))
    closing, evading = main.copy(), main.copy()
    closing.join_rule(ALICE, "invite", event_id="$invite_only")
    evading.join(EVE, event_id="$eve_joins")

    resolved = room.resolve(closing, evading)

    assert resolved[JR] == "$invite_only"
    assert member(EVE) not in resolved


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_an_event_rejected_during_iterative_auth_checks_is_not_in_the_resolved_state(version):
    room, main = new_room(version, admins={BOB: 50}, members=(BOB,))
    restricting, chatting = main.copy(), main.copy()
    restricting.power_levels(
        ALICE, admin_users(room, bob=50), extra={"events": {"m.room.topic": 100}}, event_id="$topic_needs_100"
    )
    chatting.topic(BOB, "bob's topic", event_id="$bob_topic")

    resolved = room.resolve(restricting, chatting)

    assert resolved[PL] == "$topic_needs_100"
    assert TOPIC not in resolved
    assert "$bob_topic" not in resolved.values()


# -- topic races: mainline, then origin_server_ts, then event_id -------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    ("alice_ts", "bob_ts", "winner"), [(2000, 1500, "$alice_topic"), (1500, 2000, "$bob_topic")]
)
def test_concurrent_topics_under_the_same_power_levels_go_to_the_later_origin_server_ts(
    version, alice_ts, bob_ts, winner
):
    room, main = new_room(version, admins={BOB: 100}, members=(BOB,))
    a, b = main.copy(), main.copy()
    a.topic(ALICE, "alice's", event_id="$alice_topic", ts=alice_ts)
    b.topic(BOB, "bob's", event_id="$bob_topic", ts=bob_ts)

    assert room.resolve(a, b)[TOPIC] == winner
    assert room.resolve(b, a)[TOPIC] == winner


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_concurrent_topics_with_equal_timestamps_go_to_the_greater_event_id(version):
    room, main = new_room(version, admins={BOB: 100}, members=(BOB,))
    a, b = main.copy(), main.copy()
    a.topic(ALICE, "alice's", event_id="$topic_b", ts=5000)
    b.topic(BOB, "bob's", event_id="$topic_a", ts=5000)

    assert room.resolve(a, b)[TOPIC] == "$topic_b"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_topic_set_under_newer_power_levels_beats_a_later_topic_set_under_older_ones(version):
    room, main = new_room(version, admins={BOB: 100}, members=(BOB,))
    newer, older = main.copy(), main.copy()
    newer.power_levels(ALICE, admin_users(room, bob=100, carol=10), event_id="$pl1")
    newer.topic(ALICE, "under pl1", event_id="$topic_under_pl1", ts=1_100)
    older.topic(BOB, "under pl0", event_id="$topic_under_pl0", ts=9_000)

    lines: list[str] = []
    resolved = room.resolve(newer, older, explain=lines.append)

    # Mainline of $pl1 is [$pl1, $pl0]: Bob's topic (position 1) sorts before Alice's
    # (position 0), so Alice's is applied last although its timestamp is older.
    assert resolved[PL] == "$pl1"
    assert resolved[TOPIC] == "$topic_under_pl1"
    text = "\n".join(lines)
    assert text.index("$topic_under_pl0: mainline ordering") < text.index(
        "$topic_under_pl1: mainline ordering"
    )
    assert "(mainline position 1, origin_server_ts 9000)" in text
    assert "(mainline position 0, origin_server_ts 1100)" in text


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    ("bob_ts", "carol_ts", "bob_id", "carol_id", "winner"),
    [
        (3000, 2000, "$pl_bob", "$pl_carol", "$pl_bob"),  # later origin_server_ts applied last
        (2000, 3000, "$pl_bob", "$pl_carol", "$pl_carol"),
        (3000, 3000, "$pl_y", "$pl_x", "$pl_y"),  # same ts: greater event_id applied last
        (3000, 3000, "$pl_x", "$pl_y", "$pl_y"),
    ],
)
def test_equally_powerful_power_events_are_ordered_by_origin_server_ts_then_event_id(
    version, bob_ts, carol_ts, bob_id, carol_id, winner
):
    room, main = new_room(version, admins={BOB: 100, CAROL: 100}, members=(BOB, CAROL))
    users = admin_users(room, bob=100, carol=100)
    a, b = main.copy(), main.copy()
    a.power_levels(BOB, users, extra={"events": {"m.room.name": 60}}, event_id=bob_id, ts=bob_ts)
    b.power_levels(CAROL, users, extra={"events": {"m.room.topic": 70}}, event_id=carol_id, ts=carol_ts)

    assert room.resolve(a, b)[PL] == winner


# -- room version 12 creators ---------------------------------------------------------


def test_v12_a_creator_outranks_a_100_power_admin_in_the_power_ordering():
    room, main = new_room("12", admins={BOB: 100}, members=(BOB, CAROL))
    admin, creator = main.copy(), main.copy()
    admin.ban(BOB, CAROL, event_id="$bob_bans_carol", ts=1_500)
    creator.power_levels(ALICE, {BOB: 0}, event_id="$alice_demotes_bob", ts=9_000)

    lines: list[str] = []
    resolved = room.resolve(admin, creator, explain=lines.append)

    assert resolved[PL] == "$alice_demotes_bob"
    assert resolved[member(CAROL)] == "$join_carol"
    assert "sender power infinite (room creator)" in "\n".join(lines)


def test_v12_additional_creators_outrank_admins_too():
    room, main = new_room(
        "12", admins={BOB: 100}, members=(BOB, CAROL, DAVE), create_content={"additional_creators": [CAROL]}
    )
    admin, creator = main.copy(), main.copy()
    admin.ban(BOB, DAVE, event_id="$bob_bans_dave", ts=1_500)
    creator.power_levels(CAROL, {BOB: 0}, event_id="$carol_demotes_bob", ts=9_000)

    resolved = room.resolve(admin, creator)

    assert resolved[PL] == "$carol_demotes_bob"
    assert resolved[member(DAVE)] == "$join_dave"


def test_v12_a_fork_claiming_an_admin_kicked_the_creator_does_not_win():
    room, main = new_room("12", admins={BOB: 100}, members=(BOB,))
    forged, honest = main.copy(), main.copy()
    # A faulty server's fork: the auth rules would not let Bob kick a creator.
    forged.kick(BOB, ALICE, event_id="$bob_kicks_alice", check=False)
    honest.topic(ALICE, "still here", event_id="$topic")

    resolved = room.resolve(forged, honest)

    assert resolved[member(ALICE)] == "$alice_join"
    assert resolved[TOPIC] == "$topic"


# -- what v2.1 (MSC4297) changes -------------------------------------------------------


def _outdated_join_rules_room(version: str) -> tuple[Room, dict, dict]:
    """MSC4297 problem A: Alice switched the room to invite-only and left; one state set
    (from a partial sync) still holds the public join rules."""
    room, main = new_room(version, admins={BOB: 100}, members=(BOB,))
    main.join_rule(ALICE, "invite", event_id="$jr1")
    main.leave(ALICE, event_id="$alice_leaves")
    outdated = dict(main.state)
    outdated[JR] = "$jr0"
    return room, main.state, outdated


@pytest.mark.parametrize("version", V2_VERSIONS)
def test_v2_replays_conflicted_join_rules_over_the_unconflicted_state_and_loses_them(version):
    room, current, outdated = _outdated_join_rules_room(version)

    resolved = resolve_state(room.version, [current, outdated], room.store())

    # Both join rules events are checked with Alice's unconflicted leave: both fail.
    assert JR not in resolved
    assert resolved[member(ALICE)] == "$alice_leaves"


def test_v2_1_replays_conflicted_join_rules_against_their_auth_events():
    room, current, outdated = _outdated_join_rules_room("12")

    resolved = resolve_state(room.version, [current, outdated], room.store())

    assert resolved[JR] == "$jr1"
    assert resolved[member(ALICE)] == "$alice_leaves"


def _outdated_power_levels_room(version: str) -> tuple[Room, dict, dict]:
    """MSC4297 problem B: Alice promotes Bob ($pl1), Bob promotes Carol ($pl2); one state
    set still holds $pl0, though it has seen $pl1 through Bob's topic's auth events."""
    room, main = new_room(version, members=(BOB, CAROL))
    main.power_levels(ALICE, admin_users(room, bob=50), event_id="$pl1")
    main.topic(BOB, "bob was promoted", event_id="$bob_topic")
    main.power_levels(BOB, admin_users(room, bob=50, carol=50), event_id="$pl2")
    outdated = dict(main.state)
    outdated[PL] = "$pl0"
    return room, main.state, outdated


@pytest.mark.parametrize("version", V2_VERSIONS)
def test_v2_misses_the_promotion_between_two_conflicted_power_levels(version):
    room, current, outdated = _outdated_power_levels_room(version)

    resolved = resolve_state(room.version, [current, outdated], room.store())

    assert resolved[PL] == "$pl0"


def test_v2_1_replays_the_conflicted_state_subgraph_so_the_promotion_is_kept():
    room, current, outdated = _outdated_power_levels_room("12")

    lines: list[str] = []
    resolved = resolve_state(room.version, [current, outdated], room.store(), explain=lines.append)

    assert resolved[PL] == "$pl2"
    # $pl1 lies on the auth path from $pl2 to $pl0 (so do Bob's join and $jr0), and is
    # replayed between them.
    text = "\n".join(lines)
    assert "conflicted state subgraph 5 events (3 not otherwise in the full conflicted set)" in text
    assert "$pl1: power ordering #3/5" in text


# -- the unconflicted state map -----------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_unconflicted_state_is_kept_as_it_is(version):
    members = tuple(f"@user{i}:x.test" for i in range(30))
    room, main = new_room(version, members=members)
    a, b = main.copy(), main.copy()
    a.topic(ALICE, "topic", event_id="$topic")
    b.send("m.room.name", ALICE, {"name": "name"}, event_id="$name")

    resolved = room.resolve(a, b)

    assert resolved == {**main.state, TOPIC: "$topic", ("m.room.name", ""): "$name"}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_resolving_identical_or_single_state_sets_returns_them_unchanged(version):
    room, main = new_room(version, members=(BOB, CAROL))
    store = room.store()

    assert resolve_state(room.version, [main.state], store) == main.state
    assert resolve_state(room.version, [main.state, dict(main.state)], store) == main.state


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_three_forks_resolve_like_any_other_number(version):
    room, main = new_room(version, admins={BOB: 50}, members=(BOB, CAROL))
    a, b, c = main.copy(), main.copy(), main.copy()
    a.ban(ALICE, EVE, event_id="$ban_eve")
    b.join(EVE, event_id="$eve_joins")
    c.topic(BOB, "from c", event_id="$topic_c")

    resolved = room.resolve(a, b, c)

    assert resolved[member(EVE)] == "$ban_eve"
    assert resolved[TOPIC] == "$topic_c"


# -- explanations and errors ---------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_explain_says_why_each_conflicted_key_resolved_as_it_did(version):
    room, main = new_room(version, members=(BOB,))
    banned, joined = main.copy(), main.copy()
    banned.ban(ALICE, EVE, event_id="$ban")
    joined.join(EVE, event_id="$eve_joins")

    lines: list[str] = []
    room.resolve(banned, joined, explain=lines.append)
    text = "\n".join(lines)

    assert "(m.room.member, '@eve:e.test') -> $ban" in text
    assert "$ban: power ordering #1/1 by @alice:a.test" in text
    assert "passed the auth checks and was applied last -> resolved" in text
    assert "$eve_joins: mainline ordering #1/1" in text
    assert "rejected by the auth rules: sender is banned" in text


def test_explain_is_silent_about_nothing_when_there_is_no_conflict():
    room, main = new_room("10")
    lines: list[str] = []
    room.resolve(main, main.copy(), explain=lines.append)
    assert len(lines) == 1 and "nothing to resolve" in lines[0]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_conflicted_event_missing_from_the_store_is_an_error(version):
    room, main = new_room(version)
    a, b = main.copy(), main.copy()
    a.topic(ALICE, "x", event_id="$topic")
    events = dict(room.events)
    del events["$topic"]

    with pytest.raises(MissingEvents, match=r"\$topic"):
        resolve_state(room.version, [a.state, b.state], InMemoryStateResStore(events))


def test_room_version_1_is_not_supported():
    with pytest.raises(UnsupportedStateResolution):
        resolve_state(get_room_version("1", require_supported=False), [{}, {}], InMemoryStateResStore({}))

"""The sync engine's database cost, in-process (query counts, not timings).

An incremental sync must not pay for quiet rooms; an initial sync of N rooms
costs a bounded number of queries in total, not a few per room.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dagcore.actions.filters import DEFAULT_FILTER, parse_filter
from dagcore.models import User
from dagcore.sync import SyncRequest, SyncResult, build_sync_response
from dagcore.sync.tokens import SyncToken
from tests.actions.roomkit import join, make_room, make_user, say

pytestmark = pytest.mark.django_db


def run(user: User, since: str | None = None, **kw: Any) -> SyncResult:
    request = SyncRequest(
        user_id=user.user_id,
        device_id=kw.pop("device_id", "DEV"),
        device_key="DEV",
        since=SyncToken.parse(since) if since else None,
        full_state=kw.pop("full_state", False),
        filter=kw.pop("filter", DEFAULT_FILTER),
    )
    return build_sync_response(request=request)


def count_queries(fn: Any) -> tuple[int, Any]:
    with CaptureQueriesContext(connection) as ctx:
        result = fn()
    return len(ctx.captured_queries), result


def user_in_rooms(n: int) -> tuple[User, User, list[str]]:
    alice, bob = make_user(), make_user()
    rooms = []
    for i in range(n):
        room = make_room(alice, preset="public_chat", name=f"room {i}")
        join(bob, room)
        say(bob, room, f"hello {i}")
        rooms.append(room)
    return alice, bob, rooms


def test_incremental_sync_cost_does_not_grow_with_quiet_rooms() -> None:
    costs = []
    for n in (3, 25):
        alice, bob, rooms = user_in_rooms(n)
        token = run(alice).body["next_batch"]
        say(bob, rooms[0], "news in one room")
        queries, result = count_queries(lambda: run(alice, token))  # noqa: B023
        assert list(result.body["rooms"]["join"]) == [rooms[0]]
        costs.append(queries)
    assert costs[0] == costs[1], f"incremental sync cost grew with quiet rooms: {costs}"
    assert costs[1] <= 8, costs


def test_initial_sync_costs_a_bounded_number_of_queries_whatever_the_rooms() -> None:
    costs = []
    for n in (3, 20):
        alice, _, rooms = user_in_rooms(n)
        queries, result = count_queries(lambda: run(alice))  # noqa: B023
        assert set(result.body["rooms"]["join"]) == set(rooms)
        costs.append(queries)
    # A constant: rooms are read together (UNIONs, IN lists), never one by one.
    assert costs[1] - costs[0] <= 3, f"initial sync cost grows with rooms: {costs}"
    assert costs[1] <= 25, costs


def test_initial_sync_with_lazy_loading_is_bounded_too() -> None:
    f = parse_filter({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 5}}})
    costs = []
    for n in (3, 20):
        alice, _, _ = user_in_rooms(n)
        queries, _ = count_queries(lambda: run(alice, filter=f))  # noqa: B023
        costs.append(queries)
    assert costs[1] - costs[0] <= 3, costs
    assert costs[1] <= 25, costs


def test_sync_with_nothing_new_is_a_handful_of_queries(django_assert_max_num_queries: Any) -> None:
    alice, _, _ = user_in_rooms(5)
    token = run(alice).body["next_batch"]
    # Positions, memberships, account data and key counts: one pipelined round trip.
    with django_assert_max_num_queries(4):
        result = run(alice, token)
    assert not result.has_news


def test_unread_counts_are_computed_once_then_extended(django_assert_max_num_queries: Any) -> None:
    alice, bob, rooms = user_in_rooms(4)
    token = run(alice).body["next_batch"]
    for room in rooms:
        say(bob, room, "more")
    result = run(alice, token)
    counts = {
        r: v["unread_notifications"]["notification_count"] for r, v in result.body["rooms"]["join"].items()
    }
    assert counts == dict.fromkeys(rooms, 2)
    say(bob, rooms[1], "and more")
    with django_assert_max_num_queries(8):
        result = run(alice, result.body["next_batch"])
    assert result.body["rooms"]["join"][rooms[1]]["unread_notifications"]["notification_count"] == 3


@pytest.mark.sqlite
def test_the_builder_answers_the_same_on_this_database() -> None:
    """Initial, incremental, lazy-loading and typing/receipt syncs (PostgreSQL UNIONs, SQLite loops)."""
    from dagcore.actions.receipts import do_set_receipt
    from dagcore.actions.typing import do_set_typing
    from dagcore.store import rooms as room_store
    from dagcore.store import timeline

    alice, bob, rooms = user_in_rooms(3)
    first = run(alice)
    assert set(first.body["rooms"]["join"]) == set(rooms)
    event_id = say(bob, rooms[1], "later")
    room = room_store.get_room(rooms[1])
    assert room is not None
    do_set_typing(room=room, user_id=bob.user_id, typing=True, timeout_ms=10000)
    stored = timeline.get_room_event(room, event_id)
    assert stored is not None
    do_set_receipt(user_id=bob.user_id, room=room, receipt_type="m.read", event=stored, thread_id="")
    f = parse_filter({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}})
    later = run(alice, first.body["next_batch"], filter=f)
    entry = later.body["rooms"]["join"][rooms[1]]
    assert [e["content"]["body"] for e in entry["timeline"]["events"]] == ["later"]
    types = {e["type"] for e in entry["ephemeral"]["events"]}
    assert types == {"m.typing", "m.receipt"}
    # Bob's two messages; bob's own receipt does not read them for alice.
    assert entry["unread_notifications"]["notification_count"] == 2
    assert list(later.body["rooms"]["join"]) == [rooms[1]]


# --------------------------------------------------------------------------- woken syncs, unread counts


def room_of_members(n: int) -> tuple[User, str, list[User], list[str]]:
    """A room of ``n`` members who all synced up to the same position (as long-polls woken together)."""
    sender = make_user()
    room = make_room(sender, preset="public_chat")
    members = [make_user() for _ in range(n)]
    for m in members:
        join(m, room)
    tokens = [run(m).body["next_batch"] for m in members]
    say(sender, room, "warm-up")
    tokens = [run(m, t).body["next_batch"] for m, t in zip(members, tokens, strict=True)]
    return sender, room, members, tokens


def timeline_bodies(result: SyncResult, room: str) -> list[str]:
    events = result.body["rooms"]["join"][room]["timeline"]["events"]
    return [e["content"].get("body") for e in events]


def test_an_incremental_sync_with_one_new_message_is_a_few_round_trips(
    django_assert_max_num_queries: Any,
) -> None:
    """Positions, memberships, account data and key counts (one pipelined round trip), the news
    with their timelines, the unread counters with the receipts, the counter upsert, relations."""
    sender, room, members, tokens = room_of_members(1)
    say(sender, room, "news")
    with django_assert_max_num_queries(8):
        result = run(members[0], tokens[0])
    assert timeline_bodies(result, room) == ["news"]
    assert result.body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 2


def test_members_woken_by_one_event_share_its_timeline_and_relations() -> None:
    """The room's new events and their bundled relations are read once per process for all
    the members syncing from the same position; what is per user (counts) is not shared."""
    sender, room, members, tokens = room_of_members(3)
    say(sender, room, "wake")
    first_cost, first = count_queries(lambda: run(members[0], tokens[0]))
    later_cost, later = count_queries(lambda: run(members[1], tokens[1]))
    assert timeline_bodies(first, room) == timeline_bodies(later, room) == ["wake"]
    assert later_cost <= first_cost - 2, (first_cost, later_cost)
    assert later_cost <= 6, later_cost
    for result in (first, later):
        assert result.body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 2


def test_a_sync_without_new_events_in_a_room_neither_reads_events_nor_rewrites_its_counter() -> None:
    from dagcore.actions.receipts import do_set_receipt
    from dagcore.store import rooms as room_store
    from dagcore.store import timeline

    sender, room, members, tokens = room_of_members(2)
    event_id = say(sender, room, "hello")
    token = run(members[0], tokens[0]).body["next_batch"]
    # Only the other member's receipt moves: the room is in the next sync (ephemeral), its
    # counter has nothing new to count, and it is not written again.
    room_row = room_store.get_room(room)
    assert room_row is not None
    stored = timeline.get_room_event(room_row, event_id)
    assert stored is not None
    do_set_receipt(
        user_id=members[1].user_id, room=room_row, receipt_type="m.read", event=stored, thread_id=""
    )
    with CaptureQueriesContext(connection) as ctx:
        result = run(members[0], token)
    entry = result.body["rooms"]["join"][room]
    assert [e["type"] for e in entry["ephemeral"]["events"]] == ["m.receipt"]
    assert entry["unread_notifications"]["notification_count"] == 2
    writes = [
        q["sql"] for q in ctx.captured_queries if "unread_counters" in q["sql"] and "INSERT" in q["sql"]
    ]
    assert writes == []
    # The start (positions, memberships, account data, key counts), the receipts, the counters.
    assert len(ctx.captured_queries) <= 6, [q["sql"][:80] for q in ctx.captured_queries]
    # A new message is counted from the timeline the sync loaded; the row waits for more.
    say(sender, room, "again")
    with CaptureQueriesContext(connection) as ctx:
        result = run(members[0], result.body["next_batch"])
    assert result.body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 3
    assert not [q for q in ctx.captured_queries if "INSERT INTO unread_counters" in q["sql"]]


def test_a_counter_moved_on_by_woken_syncs_is_written_every_few_events_and_right_everywhere() -> None:
    """A woken sync counts the new events it loaded without writing the counter's row (the
    write was its one commit); the row is written once SAVE_COUNTER_EVERY events were counted,
    and a process without the newer counter (another Tribune, a restart) counts from the row
    to the same numbers."""
    from dagcore.actions.push_rules import SAVE_COUNTER_EVERY
    from dagcore.caching import clear_process_caches

    sender, room, members, tokens = room_of_members(1)
    say(sender, room, "start")
    start = run(members[0], tokens[0]).body
    token = start["next_batch"]
    counted = start["rooms"]["join"][room]["unread_notifications"]["notification_count"]

    def row() -> tuple[int, int]:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT upto_stream, notification_count FROM unread_counters WHERE user_id = %s",
                [members[0].user_id],
            )
            return cur.fetchone()

    def message_and_sync(body: str) -> int:
        """Say ``body``, sync, check the count; how many counter rows the sync wrote."""
        nonlocal token, counted
        say(sender, room, body)
        with CaptureQueriesContext(connection) as ctx:
            result = run(members[0], token)
        token = result.body["next_batch"]
        counted += 1
        assert result.body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == counted
        return len([q for q in ctx.captured_queries if "INSERT INTO unread_counters" in q["sql"]])

    # The events the first sync counted are pending too: the row is written within a round.
    assert sum(message_and_sync(f"a{n}") for n in range(SAVE_COUNTER_EVERY)) >= 1
    while not message_and_sync("until written"):
        pass
    written = row()
    assert written[1] == counted
    for n in range(SAVE_COUNTER_EVERY - 1):
        assert message_and_sync(f"b{n}") == 0
        assert row() == written
    assert message_and_sync("the round's last") == 1 and row()[1] == counted
    # Three more, counted in this process only; then another process counts from the row.
    for n in range(3):
        say(sender, room, f"late{n}")
    here = run(members[0], token).body["rooms"]["join"][room]["unread_notifications"]
    clear_process_caches()
    elsewhere = run(members[0], token).body["rooms"]["join"][room]["unread_notifications"]
    assert here == elsewhere and here["notification_count"] == counted + 3


def test_a_changed_push_rule_recounts_while_an_unchanged_ruleset_is_not_read_again() -> None:
    from dagcore.actions.push_rules import NewPushRule, check_put_rule

    sender, room, members, tokens = room_of_members(1)
    alice = members[0]
    say(sender, room, "one")
    with CaptureQueriesContext(connection) as ctx:
        result = run(alice, tokens[0])
    assert result.body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 2
    assert not [q for q in ctx.captured_queries if "FROM push_rules" in q["sql"].replace('"', "")]
    # Muting the room (a room rule without actions) moves the rules' version: counts are redone.
    mute = NewPushRule(kind="room", rule_id=room, conditions=[], actions=[], pattern=None)
    check_put_rule(user_id=alice.user_id, rule=mute)
    say(sender, room, "two")
    result = run(alice, result.body["next_batch"])
    assert result.body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 0


def test_bundled_relations_follow_the_stream_position_they_are_read_at() -> None:
    """Relations remembered for one position are not served to a sync at a later one."""
    sender, room, members, _ = room_of_members(1)
    root = say(sender, room, "root")
    say(sender, room, "reply 1", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    f = parse_filter({"room": {"timeline": {"limit": 50}}})

    def thread_count() -> int:
        events = run(members[0], filter=f).body["rooms"]["join"][room]["timeline"]["events"]
        (found,) = [e for e in events if e["event_id"] == root]
        return int(found["unsigned"]["m.relations"]["m.thread"]["count"])

    assert thread_count() == 1
    say(sender, room, "reply 2", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    assert thread_count() == 2


@pytest.mark.sqlite
def test_counts_of_a_woken_member_match_a_fresh_count() -> None:
    """Counts extended from the timeline just read equal counts computed from scratch."""
    from dagcore.models import UnreadCounter

    sender, room, members, tokens = room_of_members(2)
    for i in range(3):
        say(sender, room, f"m{i}")
    say(members[0], room, "my own message reads the room")
    say(sender, room, "after mine")
    extended = run(members[0], tokens[0]).body["rooms"]["join"][room]["unread_notifications"]
    UnreadCounter.objects.filter(user_id=members[0].user_id).delete()
    fresh = run(members[0]).body["rooms"]["join"][room]["unread_notifications"]
    assert extended == fresh == {"notification_count": 1, "highlight_count": 0}

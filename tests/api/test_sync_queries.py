"""The sync builder's database cost, in-process (query counts, not timings).

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
from tests.actions.roomkit import join, make_room, make_user, say
from tribune.sync.builder import SyncParams, SyncResult, build_sync
from tribune.tokens import SyncToken

pytestmark = pytest.mark.django_db


def run(user: User, since: str | None = None, **kw: Any) -> SyncResult:
    params = SyncParams(
        user_id=user.user_id,
        device_id=kw.pop("device_id", "DEV"),
        device_key="DEV",
        since=SyncToken.parse(since) if since else None,
        full_state=kw.pop("full_state", False),
        filter=kw.pop("filter", DEFAULT_FILTER),
    )
    return build_sync(params)


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
    assert costs[1] <= 25, costs


def test_initial_sync_costs_a_bounded_number_of_queries_whatever_the_rooms() -> None:
    costs = []
    for n in (3, 20):
        alice, _, rooms = user_in_rooms(n)
        queries, result = count_queries(lambda: run(alice))  # noqa: B023
        assert set(result.body["rooms"]["join"]) == set(rooms)
        costs.append(queries)
    # A constant: rooms are read together (UNIONs, IN lists), never one by one.
    assert costs[1] - costs[0] <= 3, f"initial sync cost grows with rooms: {costs}"
    assert costs[1] <= 40, costs


def test_initial_sync_with_lazy_loading_is_bounded_too() -> None:
    f = parse_filter({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 5}}})
    costs = []
    for n in (3, 20):
        alice, _, _ = user_in_rooms(n)
        queries, _ = count_queries(lambda: run(alice, filter=f))  # noqa: B023
        costs.append(queries)
    assert costs[1] - costs[0] <= 3, costs


def test_sync_with_nothing_new_is_a_handful_of_queries(django_assert_max_num_queries: Any) -> None:
    alice, _, _ = user_in_rooms(5)
    token = run(alice).body["next_batch"]
    with django_assert_max_num_queries(5):
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
    with django_assert_max_num_queries(30):
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

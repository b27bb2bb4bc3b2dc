"""History visibility and the cost of reading a room (in-process, real database)."""

from __future__ import annotations

import pytest

from dagcore.actions import room_access
from dagcore.actions.membership import check_leave_room
from dagcore.http.errors import MatrixError
from dagcore.store import timeline
from tests.actions.roomkit import bodies, invite, join, make_room, make_user, reader, say, set_state

pytestmark = pytest.mark.django_db


def _history(user, room_id: str) -> list[str]:
    page = room_access.access_room_messages(reader(user, room_id), from_key=None, direction="f", limit=1000)
    return bodies(page.events)


def test_joined_visibility_hides_history_before_the_join_but_shows_after() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    set_state(alice, room, "m.room.history_visibility", {"history_visibility": "joined"})
    say(alice, room, "before")
    join(bob, room)
    say(alice, room, "after")
    assert _history(bob, room) == ["after"]
    assert _history(alice, room) == ["before", "after"]


def test_shared_visibility_shows_history_from_before_the_join() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    say(alice, room, "before")
    join(bob, room)
    say(alice, room, "after")
    assert _history(bob, room) == ["before", "after"]


def test_invited_visibility_shows_history_from_the_invite_on() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="private_chat")
    set_state(alice, room, "m.room.history_visibility", {"history_visibility": "invited"})
    say(alice, room, "before invite")
    invite(alice, room, bob)
    say(alice, room, "while invited")
    join(bob, room)
    say(alice, room, "joined")
    assert _history(bob, room) == ["while invited", "joined"]


def test_world_readable_rooms_can_be_read_by_non_members_but_others_cannot() -> None:
    alice, stranger = make_user(), make_user()
    open_room = make_room(alice, preset="public_chat")
    set_state(alice, open_room, "m.room.history_visibility", {"history_visibility": "world_readable"})
    say(alice, open_room, "public words")
    closed_room = make_room(alice, preset="public_chat")
    say(alice, closed_room, "members only")
    assert _history(stranger, open_room) == ["public words"]
    with pytest.raises(MatrixError) as exc:
        reader(stranger, closed_room)
    assert exc.value.status == 403


def test_a_departed_member_reads_up_to_their_leave_and_no_further() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    say(alice, room, "while bob was here")
    check_leave_room(user_id=bob.user_id, room_id=room)
    say(alice, room, "after bob left")
    assert _history(bob, room) == ["while bob was here"]
    assert _history(alice, room) == ["while bob was here", "after bob left"]


def test_the_user_sees_their_own_leave_even_in_a_joined_only_room() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    set_state(alice, room, "m.room.history_visibility", {"history_visibility": "joined"})
    join(bob, room)
    check_leave_room(user_id=bob.user_id, room_id=room)
    page = room_access.access_room_messages(reader(bob, room), from_key=None, direction="b", limit=5)
    own = [e.event.membership for e in page.events if e.event.state_key == bob.user_id]
    assert own[0] == "leave"


def test_event_lookup_of_an_invisible_event_is_404_like_an_unknown_one() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    set_state(alice, room, "m.room.history_visibility", {"history_visibility": "joined"})
    secret = say(alice, room, "before")
    join(bob, room)
    visible = say(alice, room, "after")
    assert room_access.access_event(reader(bob, room), visible).event_id == visible
    for event_id in (secret, "$nonexistent"):
        with pytest.raises(MatrixError) as exc:
            room_access.access_event(reader(bob, room), event_id)
        assert exc.value.status == 404


def test_messages_of_many_events_cost_a_constant_number_of_queries(django_assert_max_num_queries) -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    for i in range(120):
        say(alice if i % 2 else bob, room, f"m{i}")
    r = reader(bob, room)
    # Pagination, visibility (state at every event) and client annotations (redactions,
    # transaction IDs, prev_content, bundled relations): bounded, whatever the page size.
    for limit in (10, 100):
        with django_assert_max_num_queries(10):
            page = room_access.access_room_messages(r, from_key=None, direction="b", limit=limit)
            room_access.get_client_event_extras(page.events, user_id=bob.user_id, device_key="DEV")
        assert len(page.events) == limit


def test_state_lookup_at_many_groups_is_two_queries(django_assert_max_num_queries) -> None:
    alice = make_user()
    room = make_room(alice, preset="public_chat")
    for i in range(30):
        set_state(alice, room, "org.example.counter", {"n": i})
    r = reader(alice, room)
    page = room_access.access_room_messages(r, from_key=None, direction="f", limit=100)
    groups = {
        e.state_group_before: [("org.example.counter", "")] for e in page.events if e.state_group_before
    }
    with django_assert_max_num_queries(2):
        found = timeline.get_state_ids_at_groups(groups)
    assert len(found) == len(groups)


def test_bundled_aggregations_of_a_page_cost_a_constant_number_of_queries(
    django_assert_max_num_queries,
) -> None:
    alice = make_user()
    room = make_room(alice, preset="public_chat")
    roots = [say(alice, room, f"root {i}") for i in range(20)]
    for i, root in enumerate(roots):
        for _ in range(i % 3):
            say(alice, room, "reply", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
        say(
            alice,
            room,
            "* edit",
            **{
                "m.new_content": {"body": "edit"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": root},
            },
        )
    page = room_access.access_room_messages(reader(alice, room), from_key=None, direction="f", limit=1000)
    parents = [e for e in page.events if e.event_id in set(roots)]
    with django_assert_max_num_queries(2):
        summary = timeline.get_relation_summaries(parents, user_id=alice.user_id)
    assert len(summary.edits) == 20
    assert {r: n for r, (n, _, _) in summary.threads.items()} == {
        r: i % 3 for i, r in enumerate(roots) if i % 3
    }

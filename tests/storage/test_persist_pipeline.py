"""The event pipeline against a real database: local sends, forks, soft-fail, rejection, state groups.

Marked ``sqlite``: ``manage.py runtests`` runs this module on PostgreSQL and again on SQLite.
"""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.db import connection

from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.persist_event import persist_received_event, send_local_event
from dagcore.http.errors import MatrixError
from dagcore.models import Event as EventRow
from dagcore.models import StateGroup
from dagcore.protocol.room_versions import get_room_version
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from tests.support.events import RemoteServer
from tests.support.rooms import current_state_ids, forward_extremities, remote_event

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db]

ALICE = f"@alice:{settings.SERVER_NAME}"
VERSIONS = ["10", "11", "12"]


def _room(version: str, preset: str = "public_chat") -> str:
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version=version, preset=preset, name="test room"))
    return room_id


def _msg(room_id: str, sender: str = ALICE, body: str = "hi") -> str:
    return send_local_event(
        room_id=room_id,
        sender=sender,
        event_type="m.room.message",
        content={"msgtype": "m.text", "body": body},
    ).event.event_id


@pytest.mark.parametrize("version", VERSIONS)
def test_a_new_room_has_the_create_preset_state_and_one_forward_extremity(version: str) -> None:
    room_id = _room(version)
    state = current_state_ids(room_id)
    for key in [("m.room.create", ""), ("m.room.member", ALICE), ("m.room.power_levels", ""),
                ("m.room.join_rules", ""), ("m.room.history_visibility", ""), ("m.room.name", "")]:  # fmt: skip
        assert key in state
    assert len(forward_extremities(room_id)) == 1
    if version == "12":
        assert ":" not in room_id  # v12 room IDs are the create event's hash


@pytest.mark.parametrize("version", VERSIONS)
def test_a_message_extends_the_dag_and_reuses_the_state_group(version: str) -> None:
    room_id = _room(version)
    before = forward_extremities(room_id)
    event_id = _msg(room_id)
    stored = event_store.get_event_by_id(event_id)
    assert stored is not None
    assert list(stored.event.prev_event_ids) == before
    assert forward_extremities(room_id) == [event_id]
    assert stored.state_group == stored.state_group_before  # no new state group for a message
    assert stored.stream_ordering is not None


def test_stream_orderings_increase_in_commit_order() -> None:
    room_id = _room("11")
    ids = [_msg(room_id, body=str(i)) for i in range(5)]
    orderings = [event_store.get_event_by_id(e).stream_ordering or 0 for e in ids]  # type: ignore[union-attr]
    assert orderings == sorted(orderings) and len(set(orderings)) == 5


def test_a_refused_local_event_stores_nothing() -> None:
    room_id = _room("11")
    count = EventRow.objects.count()
    with pytest.raises(MatrixError) as refused:
        send_local_event(room_id=room_id, sender="@mallory:elsewhere", event_type="m.room.message",
                         content={"body": "x", "msgtype": "m.text"})  # fmt: skip
    assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")
    assert EventRow.objects.count() == count
    # the permitted control: the member may send
    _msg(room_id)
    assert EventRow.objects.count() == count + 1


def test_state_events_are_stored_as_deltas_then_snapshots() -> None:
    room_id = _room("11")
    for i in range(state_store.MAX_STATE_CHAIN + 5):
        send_local_event(
            room_id=room_id, sender=ALICE, event_type="m.room.topic", content={"topic": str(i)}, state_key=""
        )
    room = room_store.get_room(room_id)
    assert room is not None and room.current_state_group is not None
    chain = state_store.get_state_group_chain(room.current_state_group)
    assert len(chain) <= state_store.MAX_STATE_CHAIN
    assert StateGroup.objects.filter(room=room, is_snapshot=True).count() >= 2
    topic_nid = state_store.get_state_ids(room.current_state_group, [("m.room.topic", "")])[
        ("m.room.topic", "")
    ]
    topic = event_store.get_events_by_nids([topic_nid])[topic_nid].event
    assert topic.content["topic"] == str(state_store.MAX_STATE_CHAIN + 4)
    assert current_state_ids(room_id)[("m.room.topic", "")] == topic.event_id


@pytest.mark.parametrize("version", VERSIONS)
def test_a_remote_join_and_message_become_part_of_the_room(version: str) -> None:
    room_id = _room(version)
    remote = RemoteServer("remote.test")
    bob = "@bob:remote.test"
    join = remote_event(remote, room_id, bob, "m.room.member", {"membership": "join"}, state_key=bob)
    result = persist_received_event(join)
    assert result.rejected_reason is None and not result.soft_failed
    assert current_state_ids(room_id)[("m.room.member", bob)] == join.event_id
    msg = remote_event(remote, room_id, bob, "m.room.message", {"msgtype": "m.text", "body": "hello"})
    assert persist_received_event(msg).stream_ordering is not None
    assert forward_extremities(room_id) == [msg.event_id]
    room = room_store.get_room(room_id)
    assert room is not None
    assert "remote.test" in room_store.get_joined_servers(room)


def test_a_fork_is_merged_by_the_next_local_event() -> None:
    room_id = _room("11")
    remote = RemoteServer("remote.test")
    bob = "@bob:remote.test"
    persist_received_event(
        remote_event(remote, room_id, bob, "m.room.member", {"membership": "join"}, state_key=bob)
    )
    base = forward_extremities(room_id)
    a = remote_event(remote, room_id, bob, "m.room.message", {"msgtype": "m.text", "body": "a"}, prev=base)
    b = remote_event(remote, room_id, bob, "m.room.message", {"msgtype": "m.text", "body": "b"}, prev=base)
    persist_received_event(a)
    persist_received_event(b)
    assert forward_extremities(room_id) == sorted([a.event_id, b.event_id])
    merged = _msg(room_id)
    stored = event_store.get_event_by_id(merged)
    assert stored is not None
    assert sorted(stored.event.prev_event_ids) == sorted([a.event_id, b.event_id])
    assert forward_extremities(room_id) == [merged]


def test_a_ban_outranks_a_concurrent_topic_change_by_the_banned_user() -> None:
    """Fork: alice bans bob on one branch while bob (moderator) changes the topic on the other."""
    room_id = _room("11")
    remote = RemoteServer("remote.test")
    bob = "@bob:remote.test"
    persist_received_event(
        remote_event(remote, room_id, bob, "m.room.member", {"membership": "join"}, state_key=bob)
    )
    send_local_event(room_id=room_id, sender=ALICE, event_type="m.room.power_levels", state_key="",
                       content={"users": {ALICE: 100, bob: 50}, "state_default": 50, "ban": 50, "kick": 50, "redact": 50})  # fmt: skip
    fork_point = forward_extremities(room_id)
    state_at_fork = current_state_ids(room_id)
    topic = remote_event(remote, room_id, bob, "m.room.topic", {"topic": "bob was here"}, state_key="",
                          prev=fork_point, state=state_at_fork)  # fmt: skip
    ban = send_local_event(room_id=room_id, sender=ALICE, event_type="m.room.member", state_key=bob,
                             content={"membership": "ban"})  # fmt: skip
    result = persist_received_event(topic)
    # Valid against the state before it (bob was a moderator) but not against the
    # current state (bob is banned): soft-failed, kept out of the room's head.
    assert result.rejected_reason is None
    assert result.soft_failed
    state = current_state_ids(room_id)
    assert state[("m.room.member", bob)] == ban.event.event_id
    assert state.get(("m.room.topic", "")) != topic.event_id
    assert forward_extremities(room_id) == [ban.event.event_id]


def test_an_event_failing_its_auth_events_is_rejected_and_never_becomes_state() -> None:
    room_id = _room("11")
    remote = RemoteServer("remote.test")
    eve = "@eve:remote.test"
    # eve never joined: her topic cites no membership and must be rejected.
    bad = remote_event(remote, room_id, eve, "m.room.topic", {"topic": "pwned"}, state_key="")
    result = persist_received_event(bad)
    assert result.rejected_reason is not None
    assert current_state_ids(room_id).get(("m.room.topic", "")) != bad.event_id
    assert bad.event_id not in forward_extremities(room_id)
    # control: a legitimate topic change by alice lands
    ok = send_local_event(
        room_id=room_id, sender=ALICE, event_type="m.room.topic", content={"topic": "fine"}, state_key=""
    )
    assert current_state_ids(room_id)[("m.room.topic", "")] == ok.event.event_id


def test_persisting_a_message_costs_the_same_queries_in_small_and_large_rooms(
    django_assert_max_num_queries,
) -> None:
    small = _room("11")
    large = _room("11")
    remote = RemoteServer("remote.test")
    for i in range(60):
        user = f"@user{i}:remote.test"
        persist_received_event(
            remote_event(remote, large, user, "m.room.member", {"membership": "join"}, state_key=user)
        )
    _msg(small)
    _msg(large)
    # PostgreSQL: lock, room row (with its forward extremities), auth state, event ID,
    # room head update, and the event with its stream position and edges in one
    # statement; plus the test's savepoint pair. SQLite needs no lock but writes the
    # counter and the two kinds of edges separately. Plus the federation outbox recorder's
    # one INSERT ... SELECT (no row when no other server is in the room).
    bound = 9 if connection.vendor == "postgresql" else 11
    with django_assert_max_num_queries(bound) as small_ctx:
        _msg(small)
    with django_assert_max_num_queries(bound) as large_ctx:
        _msg(large)
    assert len(large_ctx.captured_queries) == len(small_ctx.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_to_one_room_are_serialised() -> None:
    # PostgreSQL: the per-room advisory lock; SQLite: IMMEDIATE transactions.
    room_id = _room("11")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                _msg(room_id, body=f"{n}-{i}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(forward_extremities(room_id)) == 1  # every event extended the one head: a line, not a fork
    room = room_store.get_room(room_id)
    assert room is not None
    depths = sorted(EventRow.objects.filter(room=room, type="m.room.message").values_list("depth", flat=True))
    assert len(depths) == 40 and len(set(depths)) == 40


@pytest.mark.parametrize("version", VERSIONS)
def test_current_state_after_a_fork_is_the_state_resolution_of_both_branches(version: str) -> None:
    """Two remote moderators change the topic concurrently; the database-backed resolution must
    pick the same winner as the pure algorithm over the same events."""
    from dagcore.protocol.state_res import InMemoryStateResStore, resolve_state
    from dagcore.store.state_res_store import DatabaseStateResStore

    room_id = _room(version)
    remote = RemoteServer("remote.test")
    bob, carol = "@bob:remote.test", "@carol:remote.test"
    for user in (bob, carol):
        persist_received_event(
            remote_event(remote, room_id, user, "m.room.member", {"membership": "join"}, state_key=user)
        )
    users = {bob: 50, carol: 50} if version == "12" else {ALICE: 100, bob: 50, carol: 50}
    send_local_event(room_id=room_id, sender=ALICE, event_type="m.room.power_levels", state_key="",
                       content={"users": users, "state_default": 50})  # fmt: skip
    fork = forward_extremities(room_id)
    state_at_fork = current_state_ids(room_id)
    t1 = remote_event(
        remote, room_id, bob, "m.room.topic", {"topic": "bob's"}, state_key="", prev=fork, state=state_at_fork
    )
    t2 = remote_event(
        remote,
        room_id,
        carol,
        "m.room.topic",
        {"topic": "carol's"},
        state_key="",
        prev=fork,
        state=state_at_fork,
    )
    persist_received_event(t1)
    persist_received_event(t2)
    assert forward_extremities(room_id) == sorted([t1.event_id, t2.event_id])

    state_a = {**state_at_fork, ("m.room.topic", ""): t1.event_id}
    state_b = {**state_at_fork, ("m.room.topic", ""): t2.event_id}
    all_events = {s.event_id: s.event for s in event_store.get_events_by_ids(
        [*state_a.values(), *state_b.values()]).values()}  # fmt: skip
    # the in-memory store needs every auth-chain event too
    frontier = list(all_events.values())
    while frontier:
        missing = {a for e in frontier for a in e.auth_event_ids if a not in all_events}
        fetched = {s.event_id: s.event for s in event_store.get_events_by_ids(missing).values()}
        all_events.update(fetched)
        frontier = list(fetched.values())
    room_version = get_room_version(version)
    expected = resolve_state(room_version, [state_a, state_b], InMemoryStateResStore(all_events))
    from_db = resolve_state(room_version, [state_a, state_b], DatabaseStateResStore())
    assert from_db == expected
    assert current_state_ids(room_id) == expected
    assert expected[("m.room.topic", "")] in (t1.event_id, t2.event_id)

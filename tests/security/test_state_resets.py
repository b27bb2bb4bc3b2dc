"""Class 3 — state resets (core): a rejected event never becomes state, a soft-failed one is
never shown or built on, and crafted deep or wide DAGs cost bounded, iterative work.

Remote events are built as another homeserver would (``tests.support.events.RemoteServer``)
and fed to the real pipeline (``persist_received_event``) against PostgreSQL.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
from django.conf import settings

from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.persist_event import persist_received_event, send_local_event
from dagcore.protocol.events import Event
from dagcore.protocol.state_res.tests.dag import BOB, CAROL, new_room
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import timeline
from tests.support.events import RemoteServer
from tests.support.rooms import current_state_ids, forward_extremities, remote_event

pytestmark = pytest.mark.django_db

ALICE = f"@alice:{settings.SERVER_NAME}"
REMOTE = RemoteServer("remote.test")
RBOB, RCAROL = "@bob:remote.test", "@carol:remote.test"


def _room(version: str = "11") -> str:
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version=version, preset="public_chat"))
    return room_id


def _remote(room_id: str, sender: str, event_type: str, content: dict[str, Any], **kwargs: Any) -> Event:
    return remote_event(REMOTE, room_id, sender, event_type, content, **kwargs)


def _join(room_id: str, user: str) -> str:
    ev = _remote(room_id, user, "m.room.member", {"membership": "join"}, state_key=user)
    assert persist_received_event(ev).rejected_reason is None
    return ev.event_id


def _visible(room_id: str, event_id: str) -> bool:
    room = room_store.get_room(room_id)
    assert room is not None
    return timeline.get_room_event(room, event_id) is not None


def test_a_rejected_power_grab_never_becomes_state_nor_authorises_later_events() -> None:
    room_id = _room()
    _join(room_id, RBOB)
    before = current_state_ids(room_id)
    grab = _remote(room_id, RBOB, "m.room.power_levels", {"users": {RBOB: 100}}, state_key="")
    assert persist_received_event(grab).rejected_reason is not None
    assert current_state_ids(room_id) == before
    assert not _visible(room_id, grab.event_id) and grab.event_id not in forward_extremities(room_id)
    # bob now cites his rejected power levels as an auth event of a privileged change:
    # an event with a rejected auth event is rejected (auth rules: "entries which were themselves rejected").
    state_with_grab = {**before, ("m.room.power_levels", ""): grab.event_id}
    abuse = _remote(
        room_id, RBOB, "m.room.join_rules", {"join_rule": "invite"}, state_key="", state=state_with_grab
    )
    reason = persist_received_event(abuse).rejected_reason
    assert reason is not None and reason.startswith("auth events"), reason
    # ...and building on it as a prev event does not bring it back either.
    topic = _remote(room_id, RBOB, "m.room.topic", {"topic": "after"}, state_key="", prev=[grab.event_id])
    persisted = persist_received_event(topic)
    assert persisted.rejected_reason is not None  # bob has 0, the topic needs 50: judged on the real state
    assert current_state_ids(room_id)[("m.room.power_levels", "")] == before[("m.room.power_levels", "")]
    assert current_state_ids(room_id)[("m.room.join_rules", "")] == before[("m.room.join_rules", "")]
    # Control: an honest message from bob is accepted and shown.
    ok = _remote(room_id, RBOB, "m.room.message", {"msgtype": "m.text", "body": "hi"})
    assert persist_received_event(ok).rejected_reason is None and _visible(room_id, ok.event_id)


def test_a_banned_users_backdated_events_are_soft_failed_and_never_shown() -> None:
    room_id = _room()
    _join(room_id, RBOB)
    before_ban = current_state_ids(room_id)
    fork = forward_extremities(room_id)
    send_local_event(room_id=room_id, sender=ALICE, event_type="m.room.member",
                       content={"membership": "ban"}, state_key=RBOB)  # fmt: skip
    banned_state = current_state_ids(room_id)
    # Built on the history before the ban: allowed there, not by the current state.
    message = _remote(room_id, RBOB, "m.room.message", {"msgtype": "m.text", "body": "sneaky"},
                      prev=fork, state=before_ban)  # fmt: skip
    rejoin = _remote(room_id, RBOB, "m.room.member", {"membership": "join", "displayname": "back"},
                     state_key=RBOB, prev=fork, state=before_ban)  # fmt: skip
    for event in (message, rejoin):
        persisted = persist_received_event(event)
        assert persisted.rejected_reason is None and persisted.soft_failed
        assert not _visible(room_id, event.event_id)
        assert event.event_id not in forward_extremities(room_id)
    assert current_state_ids(room_id) == banned_state
    # The next local event does not merge the soft-failed branch back in.
    send_local_event(room_id=room_id, sender=ALICE, event_type="m.room.message",
                       content={"msgtype": "m.text", "body": "control"})  # fmt: skip
    assert current_state_ids(room_id)[("m.room.member", RBOB)] == banned_state[("m.room.member", RBOB)]


def test_a_ban_survives_a_concurrent_fork_that_raises_the_banned_user() -> None:
    room_id = _room()
    _join(room_id, RBOB)
    _join(room_id, RCAROL)
    users = {ALICE: 100, RCAROL: 50}
    send_local_event(room_id=room_id, sender=ALICE, event_type="m.room.power_levels",
                       content={"users": users, "state_default": 50}, state_key="")  # fmt: skip
    fork, state_at_fork = forward_extremities(room_id), current_state_ids(room_id)
    send_local_event(room_id=room_id, sender=ALICE, event_type="m.room.member",
                       content={"membership": "ban"}, state_key=RBOB)  # fmt: skip
    # carol, on the old branch, makes bob a moderator and bob changes the topic there.
    raise_bob = _remote(room_id, RCAROL, "m.room.power_levels", {"users": {**users, RBOB: 50}, "state_default": 50},
                        state_key="", prev=fork, state=state_at_fork)  # fmt: skip
    persist_received_event(raise_bob)
    state_b = {**state_at_fork, ("m.room.power_levels", ""): raise_bob.event_id}
    topic = _remote(room_id, RBOB, "m.room.topic", {"topic": "bob rules"}, state_key="",
                    prev=[raise_bob.event_id], state=state_b)  # fmt: skip
    persist_received_event(topic)
    send_local_event(room_id=room_id, sender=ALICE, event_type="m.room.message",
                       content={"msgtype": "m.text", "body": "merge"})  # fmt: skip
    now = current_state_ids(room_id)
    member = event_store.get_events_by_ids([now[("m.room.member", RBOB)]])[now[("m.room.member", RBOB)]]
    assert member.event.membership == "ban"
    assert now.get(("m.room.topic", "")) != topic.event_id


def test_a_long_membership_auth_chain_is_persisted_and_resolved_without_recursion() -> None:
    """Each member event of bob's cites the previous one: an auth chain as long as the history."""
    room_id = _room()
    _join(room_id, RBOB)
    length = 300
    for i in range(length):
        ev = _remote(room_id, RBOB, "m.room.member", {"membership": "join", "displayname": f"bob{i}"},
                     state_key=RBOB)  # fmt: skip
        assert persist_received_event(ev).rejected_reason is None
    fork, state_at_fork = forward_extremities(room_id), current_state_ids(room_id)
    a = _remote(room_id, RBOB, "m.room.member", {"membership": "join", "displayname": "A"}, state_key=RBOB,
                prev=fork, state=state_at_fork)  # fmt: skip
    b = _remote(room_id, RBOB, "m.room.member", {"membership": "join", "displayname": "B"}, state_key=RBOB,
                prev=fork, state=state_at_fork)  # fmt: skip
    persist_received_event(a)
    started = time.monotonic()
    persist_received_event(b)  # a fork: the two branches are resolved
    assert time.monotonic() - started < 10
    assert current_state_ids(room_id)[("m.room.member", RBOB)] in (a.event_id, b.event_id)
    stored = event_store.get_event_by_id(b.event_id)
    assert stored is not None
    chain = event_store.get_auth_chains([stored.nid])[stored.nid]
    assert len(chain) >= length  # the whole chain is indexed, not walked per resolution


def test_a_merge_of_the_widest_allowed_fork_is_resolved() -> None:
    """Twenty moderators change the topic on twenty branches; one event merges them all."""
    room_id = _room()
    mods = [f"@mod{i}:remote.test" for i in range(20)]
    for user in mods:
        _join(room_id, user)
    send_local_event(room_id=room_id, sender=ALICE, event_type="m.room.power_levels", state_key="",
                       content={"users": {ALICE: 100, **{m: 50 for m in mods}}})  # fmt: skip
    fork, state_at_fork = forward_extremities(room_id), current_state_ids(room_id)
    branches = []
    for i, user in enumerate(mods):
        ev = _remote(
            room_id, user, "m.room.topic", {"topic": f"t{i}"}, state_key="", prev=fork, state=state_at_fork
        )
        persist_received_event(ev)
        branches.append(ev.event_id)
    assert forward_extremities(room_id) == sorted(branches)
    merge = send_local_event(room_id=room_id, sender=ALICE, event_type="m.room.message",
                               content={"msgtype": "m.text", "body": "merged"})  # fmt: skip
    assert sorted(merge.event.prev_event_ids) == sorted(branches)
    assert current_state_ids(room_id)[("m.room.topic", "")] in branches
    assert forward_extremities(room_id) == [merge.event.event_id]


def test_pure_resolution_of_deep_and_wide_dags_is_iterative() -> None:
    """Conflicts whose auth chains are deeper than Python's recursion limit, over many keys."""
    depth = sys.getrecursionlimit() + 200
    room, main = new_room("11", admins={BOB: 50, CAROL: 50}, members=(BOB, CAROL))
    for i in range(depth):  # bob's own membership chain: each event authorised by the previous
        main.send("m.room.member", BOB, {"membership": "join", "displayname": str(i)}, state_key=BOB)
    left, right = main.copy(), main.copy()
    for i in range(50):
        left.send(f"org.example.k{i}", BOB, {"v": "left"})
        right.send(f"org.example.k{i}", CAROL, {"v": "right"})
    left.send("m.room.member", BOB, {"membership": "join", "displayname": "L"}, state_key=BOB)
    right.send("m.room.member", BOB, {"membership": "join", "displayname": "R"}, state_key=BOB)
    started = time.monotonic()
    resolved = room.resolve(left, right)
    assert time.monotonic() - started < 30
    for i in range(50):
        assert resolved[(f"org.example.k{i}", "")] in (left.state[(f"org.example.k{i}", "")],
                                                       right.state[(f"org.example.k{i}", "")])  # fmt: skip
    # Control: resolving a fork with itself is the fork's state.
    assert room.resolve(left, left.copy()) == left.state

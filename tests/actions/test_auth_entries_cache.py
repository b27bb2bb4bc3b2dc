"""The auth entries of a room's next local event (``dagcore.store.state.get_current_state_entries``):
kept for the room's current state group only, each event parsed once for every sender."""

from __future__ import annotations

import pytest

from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store.state import _current_entries
from tests.actions.roomkit import join, make_room, make_user, say, set_state

pytestmark = pytest.mark.django_db

CREATE = ("m.room.create", "")
POWER = ("m.room.power_levels", "")


def _entries(room_id: str, *keys: tuple[str, str]):
    room = room_store.get_room(room_id)
    assert room is not None
    return room, state_store.get_current_state_entries(room, [CREATE, POWER, *keys])


def test_only_the_current_groups_answers_are_kept_and_their_events_are_shared() -> None:
    alice, bob = make_user(), make_user()
    room_id = make_room(alice, preset="public_chat")
    join(bob, room_id)
    say(alice, room_id)
    say(bob, room_id)
    room, for_alice = _entries(room_id, ("m.room.member", alice.user_id))
    _, for_bob = _entries(room_id, ("m.room.member", bob.user_id))
    # Two senders' key sets, one parse of the events they share.
    assert for_alice[CREATE][1] is for_bob[CREATE][1]
    assert for_alice[POWER][1] is for_bob[POWER][1]
    record = _current_entries.get(room.pk)
    assert record is not None and record.group == room.current_state_group
    assert len(record.answers) >= 2
    # A state change: the next group's answers replace the old group's, and the events
    # that did not change are not parsed again.
    carol = make_user()
    join(carol, room_id)
    say(carol, room_id)
    room, for_carol = _entries(room_id, ("m.room.member", carol.user_id))
    record = _current_entries.get(room.pk)
    assert record is not None and record.group == room.current_state_group
    assert all(("m.room.member", alice.user_id) not in answer for answer in record.answers.values())
    assert for_carol[CREATE][1] is for_alice[CREATE][1]


def test_a_changed_state_event_is_read_anew() -> None:
    alice = make_user()
    room_id = make_room(alice)
    _, before = _entries(room_id)
    set_state(alice, room_id, "m.room.power_levels", {**before[POWER][1].content, "events_default": 50})
    _, after = _entries(room_id)
    assert after[POWER][0] != before[POWER][0]
    assert after[POWER][1].content["events_default"] == 50

"""The ``rooms`` section and its steps, run in-process on their explicit inputs."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dagcore.actions.account_data import do_set_account_data
from dagcore.actions.filters import parse_filter
from dagcore.actions.membership import check_forget_room, check_knock_room, check_leave_room
from dagcore.sync.device_lists import build_device_lists
from dagcore.sync.plan import JOIN, find_newly_joined, find_news, plan_rooms
from dagcore.sync.room_state import build_state_ids
from dagcore.sync.rooms import build_rooms, select_rooms
from dagcore.sync.summary import build_summaries
from dagcore.sync.timeline import filter_visibility, load_timelines
from tests.actions.roomkit import invite, join, make_room, make_user, say, set_state
from tests.sync.kit import inputs, now_token, room_nid

# Also on SQLite (the quick start): the store answers it with other statements.
pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def message_bodies(entry: dict[str, Any]) -> list[str]:
    return [e["content"]["body"] for e in entry["timeline"]["events"] if e["type"] == "m.room.message"]


def state_types(entry: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in entry["state"]["events"]}


# --------------------------------------------------------------------------- leave


def test_a_leave_since_the_token_puts_the_room_under_leave_with_the_timeline_up_to_the_leave() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    token = now_token()
    say(alice, room, "before the leave")
    check_leave_room(user_id=bob.user_id, room_id=room)
    say(alice, room, "after the leave")
    inp = inputs(bob, token)

    body = build_rooms(inp.ctx, inp.push_rules, inp.memberships).body

    assert list(body) == ["leave"]
    entry = body["leave"][room]
    assert message_bodies(entry) == ["before the leave"]
    last = entry["timeline"]["events"][-1]
    assert (last["type"], last["state_key"], last["content"]["membership"]) == (
        "m.room.member",
        bob.user_id,
        "leave",
    )


def test_an_initial_sync_lists_left_rooms_only_with_include_leave_and_never_forgotten_ones() -> None:
    alice, bob = make_user(), make_user()
    kept, forgotten = make_room(alice, preset="public_chat"), make_room(alice, preset="public_chat")
    for room in (kept, forgotten):
        join(bob, room)
        check_leave_room(user_id=bob.user_id, room_id=room)
    check_forget_room(user_id=bob.user_id, room_id=forgotten)

    plain = inputs(bob)
    assert select_rooms(plain.ctx, plain.memberships).leaves == []
    with_leave = inputs(bob, sync_filter=parse_filter({"room": {"include_leave": True}}))
    selection = select_rooms(with_leave.ctx, with_leave.memberships)
    assert [m.room_id for m in selection.leaves] == [kept]


# --------------------------------------------------------------------------- invite and knock


def test_an_invite_since_the_token_carries_stripped_state_and_the_invite_itself() -> None:
    alice, bob = make_user(), make_user()
    token = now_token()
    room = make_room(alice, preset="private_chat", name="Secret plans")
    invite(alice, room, bob)
    inp = inputs(bob, token)

    body = build_rooms(inp.ctx, inp.push_rules, inp.memberships).body

    assert list(body) == ["invite"]
    events = body["invite"][room]["invite_state"]["events"]
    assert {
        "type": "m.room.name",
        "state_key": "",
        "sender": alice.user_id,
        "content": {"name": "Secret plans"},
    } in events
    own = [e for e in events if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert [e["content"]["membership"] for e in own] == ["invite"]
    # Stripped state only: no timeline, no event IDs.
    assert all(set(e) == {"type", "state_key", "sender", "content"} for e in events)


def test_an_invite_from_an_ignored_user_is_not_shown() -> None:
    alice, bob = make_user(), make_user()
    do_set_account_data(
        user_id=bob.user_id,
        room_id=None,
        data_type="m.ignored_user_list",
        content={"ignored_users": {alice.user_id: {}}},
    )
    room = make_room(alice, preset="private_chat")
    invite(alice, room, bob)
    inp = inputs(bob)

    assert inp.ctx.ignored == {alice.user_id}
    assert select_rooms(inp.ctx, inp.memberships).invites == []
    assert "invite" not in build_rooms(inp.ctx, inp.push_rules, inp.memberships).body


def test_a_knock_since_the_token_is_under_knock_with_knock_state() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, room_version="10", name="Knock first")
    set_state(alice, room, "m.room.join_rules", {"join_rule": "knock"})
    token = now_token()
    check_knock_room(user=bob, room_id_or_alias=room)
    inp = inputs(bob, token)

    body = build_rooms(inp.ctx, inp.push_rules, inp.memberships).body

    events = body["knock"][room]["knock_state"]["events"]
    assert ("m.room.join_rules", "") in {(e["type"], e["state_key"]) for e in events}
    assert [e["content"]["membership"] for e in events if e["state_key"] == bob.user_id] == ["knock"]
    assert "join" not in body and "invite" not in body


# --------------------------------------------------------------------------- plan and timelines


def test_only_rooms_with_new_events_have_news_and_a_timeline() -> None:
    alice, bob = make_user(), make_user()
    rooms = [make_room(alice, preset="public_chat") for _ in range(3)]
    for room in rooms:
        join(bob, room)
    token = now_token()
    say(bob, rooms[1], "news")
    inp = inputs(alice, token)
    selection = select_rooms(inp.ctx, inp.memberships)

    news = find_news(inp.ctx, joined=selection.joined, leaves=selection.leaves)
    plans = plan_rooms(
        inp.ctx, joined=selection.joined, leaves=selection.leaves, news=news, newly_joined=set()
    )

    busy = room_nid(inp, rooms[1])
    assert set(news.rooms) == {busy}
    assert {nid for nid, p in plans.items() if p.timeline_range is not None} == {busy}
    assert not any(p.full_state for p in plans.values())
    body = build_rooms(inp.ctx, inp.push_rules, inp.memberships).body
    assert list(body["join"]) == [rooms[1]]
    assert message_bodies(body["join"][rooms[1]]) == ["news"]


def test_a_room_joined_since_the_token_is_synced_from_scratch_with_full_state() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat", name="Joined later")
    say(alice, room, "history before bob")
    token = now_token()
    join(bob, room)
    inp = inputs(bob, token)
    selection = select_rooms(inp.ctx, inp.memberships)

    newly = find_newly_joined(inp.ctx, selection.joined)
    news = find_news(inp.ctx, joined=selection.joined, leaves=selection.leaves)
    plans = plan_rooms(
        inp.ctx, joined=selection.joined, leaves=selection.leaves, news=news, newly_joined=newly
    )

    nid = room_nid(inp, room)
    assert newly == {nid}
    assert plans[nid].full_state and plans[nid].section == JOIN
    assert plans[nid].timeline_range == (None, inp.ctx.now.events)
    entry = build_rooms(inp.ctx, inp.push_rules, inp.memberships).body["join"][room]
    assert "history before bob" in message_bodies(entry)
    everything = state_types(entry) | {(e["type"], e.get("state_key")) for e in entry["timeline"]["events"]}
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.member", bob.user_id)} <= everything


def test_a_timeline_longer_than_the_limit_is_cut_to_its_newest_events_and_marked_limited() -> None:
    alice = make_user()
    room = make_room(alice, preset="public_chat")
    token = now_token()
    for i in range(5):
        say(alice, room, f"m{i}")
    inp = inputs(alice, token, sync_filter=parse_filter({"room": {"timeline": {"limit": 2}}}))
    selection = select_rooms(inp.ctx, inp.memberships)
    news = find_news(inp.ctx, joined=selection.joined, leaves=selection.leaves)
    plans = plan_rooms(
        inp.ctx, joined=selection.joined, leaves=selection.leaves, news=news, newly_joined=set()
    )

    timelines = load_timelines(inp.ctx, plans, news)

    nid = room_nid(inp, room)
    assert [e.event.content["body"] for e in timelines.of(nid).events] == ["m3", "m4"]
    assert timelines.of(nid).limited
    # A cut timeline is not the room's whole news: the unread counts must read it themselves.
    assert nid not in timelines.complete


def test_an_uncut_unfiltered_timeline_is_complete_and_spares_the_device_lists_a_read() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    token = now_token()
    join(bob, room)
    inp = inputs(alice, token)
    rooms = build_rooms(inp.ctx, inp.push_rules, inp.memberships)
    nid = room_nid(inp, room)
    assert rooms.complete[nid][0] == token.events

    with CaptureQueriesContext(connection) as reused:
        with_timelines = build_device_lists(
            inp.ctx, inp.memberships, rooms_with_news=rooms.rooms_with_news, complete=rooms.complete
        )
    with CaptureQueriesContext(connection) as read:
        without = build_device_lists(
            inp.ctx, inp.memberships, rooms_with_news=rooms.rooms_with_news, complete={}
        )

    assert with_timelines == without == {"changed": [bob.user_id], "left": []}
    assert len(read.captured_queries) == len(reused.captured_queries) + 1


def test_an_ignored_users_messages_are_left_out_but_their_state_events_stay() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    do_set_account_data(
        user_id=alice.user_id,
        room_id=None,
        data_type="m.ignored_user_list",
        content={"ignored_users": {bob.user_id: {}}},
    )
    token = now_token()
    say(bob, room, "ignored")
    set_state(bob, room, "m.room.member", {"membership": "join", "displayname": "Bob"}, bob.user_id)
    say(alice, room, "mine")
    inp = inputs(alice, token)

    entry = build_rooms(inp.ctx, inp.push_rules, inp.memberships).body["join"][room]

    assert inp.ctx.timeline_filter.filters_anything
    assert [(e["type"], e["sender"]) for e in entry["timeline"]["events"]] == [
        ("m.room.member", bob.user_id),
        ("m.room.message", alice.user_id),
    ]


def test_a_departed_users_timeline_hides_what_history_visibility_keeps_from_them() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    set_state(alice, room, "m.room.history_visibility", {"history_visibility": "joined"})
    say(alice, room, "before bob")
    join(bob, room)
    say(alice, room, "while bob is here")
    check_leave_room(user_id=bob.user_id, room_id=room)
    inp = inputs(bob, sync_filter=parse_filter({"room": {"include_leave": True, "timeline": {"limit": 50}}}))
    selection = select_rooms(inp.ctx, inp.memberships)
    news = find_news(inp.ctx, joined=selection.joined, leaves=selection.leaves)
    plans = plan_rooms(
        inp.ctx, joined=selection.joined, leaves=selection.leaves, news=news, newly_joined=set()
    )
    loaded = load_timelines(inp.ctx, plans, news)

    visible = filter_visibility(inp.ctx, plans, loaded)

    nid = room_nid(inp, room)
    read = [e.event.content.get("body") for e in loaded.of(nid).events if e.event.type == "m.room.message"]
    shown = [e.event.content.get("body") for e in visible.of(nid).events if e.event.type == "m.room.message"]
    assert read == ["before bob", "while bob is here"]
    assert shown == ["while bob is here"]


# --------------------------------------------------------------------------- state, summary


def test_a_gap_brings_the_state_that_changed_between_the_token_and_the_timeline() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    token = now_token()
    set_state(alice, room, "m.room.topic", {"topic": "changed in the gap"})
    for i in range(4):
        say(bob, room, f"m{i}")
    inp = inputs(alice, token, sync_filter=parse_filter({"room": {"timeline": {"limit": 2}}}))

    entry = build_rooms(inp.ctx, inp.push_rules, inp.memberships).body["join"][room]

    assert entry["timeline"]["limited"]
    assert message_bodies(entry) == ["m2", "m3"]
    assert state_types(entry) == {("m.room.topic", "")}
    (topic,) = entry["state"]["events"]
    assert topic["content"] == {"topic": "changed in the gap"}


def test_lazy_loading_sends_a_senders_member_event_once_per_device() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    say(bob, room, "one")
    lazy = parse_filter({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}})
    first = inputs(alice, sync_filter=lazy)
    initial = build_rooms(first.ctx, first.push_rules, first.memberships).body["join"][room]
    # Full state, lazily: the timeline's sender and the user, not everyone.
    assert ("m.room.member", bob.user_id) in state_types(initial)
    token = now_token()
    say(bob, room, "two")

    again = inputs(alice, token, sync_filter=lazy)
    same_device = build_rooms(again.ctx, again.push_rules, again.memberships).body["join"][room]
    other = inputs(alice, token, sync_filter=lazy, device_key="OTHER")
    other_device = build_rooms(other.ctx, other.push_rules, other.memberships).body["join"][room]

    assert message_bodies(same_device) == message_bodies(other_device) == ["two"]
    assert ("m.room.member", bob.user_id) not in state_types(same_device)
    assert state_types(other_device) == {("m.room.member", bob.user_id)}


def test_summaries_count_members_and_name_heroes_only_for_unnamed_rooms() -> None:
    alice, bob, carol = make_user(), make_user(), make_user()
    unnamed = make_room(alice, preset="public_chat")
    named = make_room(alice, preset="public_chat", name="Has a name")
    for room in (unnamed, named):
        join(bob, room)
    invite(alice, unnamed, carol)
    inp = inputs(alice)
    selection = select_rooms(inp.ctx, inp.memberships)
    news = find_news(inp.ctx, joined=selection.joined, leaves=selection.leaves)
    plans = plan_rooms(
        inp.ctx, joined=selection.joined, leaves=selection.leaves, news=news, newly_joined=set()
    )
    timelines = load_timelines(inp.ctx, plans, news)

    summaries = build_summaries(inp.ctx, plans, timelines)

    assert summaries[room_nid(inp, unnamed)] == {
        "m.joined_member_count": 2,
        "m.invited_member_count": 1,
        "m.heroes": [bob.user_id, carol.user_id],
    }
    assert summaries[room_nid(inp, named)] == {"m.joined_member_count": 2, "m.invited_member_count": 0}


def test_a_quiet_joined_room_has_state_only_with_full_state() -> None:
    alice = make_user()
    make_room(alice, preset="public_chat", name="Quiet")
    token = now_token()

    def state_of(full_state: bool) -> set[tuple[str, str]]:
        inp = inputs(alice, token, full_state=full_state)
        selection = select_rooms(inp.ctx, inp.memberships)
        news = find_news(inp.ctx, joined=selection.joined, leaves=selection.leaves)
        plans = plan_rooms(
            inp.ctx, joined=selection.joined, leaves=selection.leaves, news=news, newly_joined=set()
        )
        timelines = load_timelines(inp.ctx, plans, news)
        (ids,) = build_state_ids(inp.ctx, plans, timelines, {}).values()
        return set(ids)

    assert state_of(False) == set()
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.member", alice.user_id)} <= state_of(True)

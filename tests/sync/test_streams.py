"""The sync engine's other sections (to-device, device lists, presence, account data,
ephemeral events, unread counts, key counts) and the engine's entry, without HTTP."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dagcore.actions.account_data import do_add_room_tag, do_set_account_data
from dagcore.actions.e2e_keys import check_key_upload, do_upload_keys
from dagcore.actions.filters import parse_filter
from dagcore.actions.membership import check_leave_room
from dagcore.actions.presence import do_set_presence
from dagcore.actions.receipts import do_set_receipt
from dagcore.actions.to_device import check_send_to_device
from dagcore.actions.typing import do_set_typing
from dagcore.models import User
from dagcore.store import accounts as account_store
from dagcore.store import rooms as room_store
from dagcore.store import timeline as timeline_store
from dagcore.sync import SyncRequest, build_sync_response
from dagcore.sync.account_data import build_global_account_data, build_room_account_data
from dagcore.sync.device_lists import build_device_lists
from dagcore.sync.e2ee_counts import e2ee_count_fields
from dagcore.sync.ephemeral import build_ephemeral
from dagcore.sync.plan import News, RoomPlan, plan_rooms
from dagcore.sync.presence import build_presence
from dagcore.sync.rooms import build_rooms, select_rooms
from dagcore.sync.to_device import build_to_device
from dagcore.sync.tokens import SyncToken
from dagcore.sync.unread import get_room_unread_counts, unread_fields
from tests.actions.roomkit import join, make_room, make_user, say
from tests.support.e2e_keys import DeviceKeys
from tests.sync.kit import Inputs, inputs, now_token, room_nid

# Also on SQLite (the quick start): the store answers it with other statements.
pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def send_to_device(sender: User, target: User, device_id: str, n: int) -> None:
    check_send_to_device(
        sender=sender.user_id,
        device_key="SENDER",
        event_type="m.test",
        txn_id=f"txn{n}",
        messages={target.user_id: {device_id: {"n": n}}},
    )


def upload_device_keys(user: User, device_id: str) -> None:
    account_store.upsert_device(user, device_id, None)
    keys = DeviceKeys(user.user_id, device_id)
    body = {"device_keys": keys.device_keys(), "one_time_keys": keys.one_time_keys(3)}
    do_upload_keys(
        user_id=user.user_id,
        device_id=device_id,
        upload=check_key_upload(body, user_id=user.user_id, device_id=device_id),
    )


def all_plans(inp: Inputs) -> dict[int, RoomPlan]:
    """The joined (and left) rooms as planned when no room has news."""
    selection = select_rooms(inp.ctx, inp.memberships)
    return plan_rooms(
        inp.ctx, joined=selection.joined, leaves=selection.leaves, news=News(), newly_joined=set()
    )


# --------------------------------------------------------------------------- to-device


def test_to_device_messages_after_the_token_and_only_those() -> None:
    alice, bob = make_user(), make_user()
    account_store.upsert_device(alice, "DEV", None)
    account_store.upsert_device(alice, "LAPTOP", None)
    send_to_device(bob, alice, "DEV", 1)
    send_to_device(bob, alice, "LAPTOP", 2)

    events, position = build_to_device(inputs(alice).ctx)
    assert [e["content"] for e in events] == [{"n": 1}]
    assert events[0]["sender"] == bob.user_id
    token = now_token().copy_with(to_device=position)

    send_to_device(bob, alice, "DEV", 3)
    later, _ = build_to_device(inputs(alice, token).ctx)
    assert [e["content"] for e in later] == [{"n": 3}]
    # The later sync acknowledged message 1: a retry from the first position no longer sees it.
    retried, _ = build_to_device(inputs(alice, SyncToken()).ctx)
    assert [e["content"] for e in retried] == [{"n": 3}]


def test_a_sync_without_a_device_has_no_to_device_section_and_keeps_the_position() -> None:
    alice = make_user()
    inp = inputs(alice, device_id=None)
    assert build_to_device(inp.ctx) == ([], inp.ctx.now.to_device)
    assert (
        "device_one_time_keys_count"
        not in build_sync_response(
            request=SyncRequest(
                user_id=alice.user_id,
                device_id=None,
                device_key="x",
                since=None,
                full_state=False,
                filter=inp.ctx.filter,
            )
        ).body
    )


# --------------------------------------------------------------------------- device lists


def test_device_lists_changed_names_a_user_who_shares_a_room_and_uploaded_new_keys() -> None:
    alice, bob, stranger = make_user(), make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    token = now_token()
    upload_device_keys(bob, "BOBDEV")
    upload_device_keys(stranger, "STRANGER")
    inp = inputs(alice, token)

    lists = build_device_lists(inp.ctx, inp.memberships, rooms_with_news={}, complete={})

    assert lists == {"changed": [bob.user_id], "left": []}


def test_device_lists_left_names_a_user_who_no_longer_shares_any_room() -> None:
    alice, bob, carol = make_user(), make_user(), make_user()
    shared_once = make_room(alice, preset="public_chat")
    still_shared = make_room(alice, preset="public_chat")
    join(bob, shared_once)
    for room in (shared_once, still_shared):
        join(carol, room)
    token = now_token()
    check_leave_room(user_id=bob.user_id, room_id=shared_once)
    check_leave_room(user_id=carol.user_id, room_id=shared_once)
    inp = inputs(alice, token)
    rooms = build_rooms(inp.ctx, inp.push_rules, inp.memberships)

    lists = build_device_lists(
        inp.ctx, inp.memberships, rooms_with_news=rooms.rooms_with_news, complete=rooms.complete
    )

    assert lists == {"changed": [], "left": [bob.user_id]}


def test_an_initial_sync_has_no_device_lists() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    upload_device_keys(bob, "BOBDEV")
    inp = inputs(alice)
    assert build_device_lists(inp.ctx, inp.memberships, rooms_with_news={}, complete={}) == {}


# --------------------------------------------------------------------------- presence


def test_presence_since_the_token_shows_users_sharing_a_room_and_no_one_else() -> None:
    alice, bob, stranger = make_user(), make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    token = now_token()
    do_set_presence(user_id=bob.user_id, state="unavailable", status_msg="lunch")
    do_set_presence(user_id=stranger.user_id, state="online")
    inp = inputs(alice, token)

    events = build_presence(inp.ctx, inp.memberships)

    assert [(e["sender"], e["content"]["presence"]) for e in events] == [(bob.user_id, "unavailable")]
    assert events[0]["content"]["status_msg"] == "lunch"
    filtered = inputs(alice, token, sync_filter=parse_filter({"presence": {"not_senders": [bob.user_id]}}))
    assert build_presence(filtered.ctx, filtered.memberships) == []


# --------------------------------------------------------------------------- account data


def test_global_account_data_since_the_token_and_the_push_rules_on_an_initial_sync() -> None:
    alice = make_user()
    do_set_account_data(user_id=alice.user_id, room_id=None, data_type="m.before", content={"a": 1})
    token = now_token()
    do_set_account_data(user_id=alice.user_id, room_id=None, data_type="m.after", content={"b": 2})

    initial = inputs(alice)
    types = [e["type"] for e in build_global_account_data(initial.ctx, initial.push_rules)]
    assert sorted(types) == ["m.after", "m.before", "m.push_rules"]
    rules = [
        e for e in build_global_account_data(initial.ctx, initial.push_rules) if e["type"] == "m.push_rules"
    ]
    assert set(rules[0]["content"]["global"]) >= {"override", "underride", "content", "room", "sender"}

    later = inputs(alice, token)
    assert build_global_account_data(later.ctx, later.push_rules) == [
        {"type": "m.after", "content": {"b": 2}}
    ]


def test_room_account_data_goes_to_its_room() -> None:
    alice = make_user()
    tagged, other = make_room(alice, preset="public_chat"), make_room(alice, preset="public_chat")
    token = now_token()
    do_add_room_tag(user_id=alice.user_id, room_id=tagged, tag="u.work", content={"order": 0.5})
    inp = inputs(alice, token)

    by_room = build_room_account_data(inp.ctx, all_plans(inp))

    assert by_room == {
        room_nid(inp, tagged): [{"type": "m.tag", "content": {"tags": {"u.work": {"order": 0.5}}}}]
    }
    assert room_nid(inp, other) not in by_room


# --------------------------------------------------------------------------- ephemeral, unread counts


def test_typing_and_receipts_since_the_token_in_the_rooms_where_they_moved() -> None:
    alice, bob = make_user(), make_user()
    busy, quiet = make_room(alice, preset="public_chat"), make_room(alice, preset="public_chat")
    for room in (busy, quiet):
        join(bob, room)
    event_id = say(bob, busy, "read me")
    token = now_token()
    row = room_store.get_room(busy)
    assert row is not None
    do_set_typing(room=row, user_id=bob.user_id, typing=True, timeout_ms=30_000)
    stored = timeline_store.get_room_event(row, event_id)
    assert stored is not None
    do_set_receipt(user_id=bob.user_id, room=row, receipt_type="m.read", event=stored, thread_id="")
    inp = inputs(alice, token)

    ephemeral = build_ephemeral(inp.ctx, all_plans(inp))

    assert set(ephemeral) == {room_nid(inp, busy)}
    typing, receipt = ephemeral[room_nid(inp, busy)]
    assert typing == {"type": "m.typing", "content": {"user_ids": [bob.user_id]}}
    assert receipt["type"] == "m.receipt"
    assert list(receipt["content"][event_id]["m.read"]) == [bob.user_id]


def test_unread_counts_count_others_messages_and_split_threads_when_asked() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    root = say(bob, room, "root")
    say(bob, room, "in thread", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    say(alice, room, "my own message is not unread for me")
    say(bob, room, "after mine")
    threaded = parse_filter({"room": {"timeline": {"unread_thread_notifications": True}}})
    inp = inputs(alice, sync_filter=threaded)
    (m,) = [m for m in inp.memberships if m.room_id == room]

    counts = get_room_unread_counts(inp.ctx, inp.push_rules, [m], rooms_with_news={}, complete={})

    fields = unread_fields(inp.ctx, counts[m.room_nid])
    # Alice's own message counts as reading the room up to it.
    assert fields["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    plain = inputs(alice)
    assert unread_fields(plain.ctx, counts[m.room_nid]) == {
        "unread_notifications": {
            "notification_count": counts[m.room_nid].notification_count,
            "highlight_count": counts[m.room_nid].highlight_count,
        }
    }


# --------------------------------------------------------------------------- key counts and the engine


def test_a_sync_with_a_device_carries_its_key_counts() -> None:
    alice = make_user()
    upload_device_keys(alice, "DEV")
    inp = inputs(alice)
    assert e2ee_count_fields(inp.start.e2e_counts) == {
        "device_one_time_keys_count": {"signed_curve25519": 3},
        "device_unused_fallback_key_types": [],
    }
    assert e2ee_count_fields(None) == {}


def test_a_sync_from_the_current_position_has_no_news_and_reads_only_the_start() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    join(bob, room)
    first = build_sync_response(
        request=SyncRequest(
            user_id=alice.user_id,
            device_id="DEV",
            device_key="DEV",
            since=None,
            full_state=False,
            filter=parse_filter({}),
        )
    )
    assert first.has_news and first.room_ids == {room}
    again = SyncRequest(
        user_id=alice.user_id,
        device_id="DEV",
        device_key="DEV",
        since=first.next_batch,
        full_state=False,
        filter=parse_filter({}),
    )
    with CaptureQueriesContext(connection) as ctx:
        quiet = build_sync_response(request=again)
    assert not quiet.has_news
    assert set(quiet.body) == {"next_batch", "device_one_time_keys_count", "device_unused_fallback_key_types"}
    assert quiet.next_batch == first.next_batch
    assert len(ctx.captured_queries) <= 4
    say(bob, room, "news")
    woken = build_sync_response(request=again)
    assert woken.has_news
    assert [e["content"]["body"] for e in woken.body["rooms"]["join"][room]["timeline"]["events"]] == ["news"]


def test_a_token_from_the_future_counts_as_now() -> None:
    now = SyncToken(events=5, to_device=3)
    assert SyncToken(events=9, to_device=1).clamped_to(now) == SyncToken(events=5, to_device=1)

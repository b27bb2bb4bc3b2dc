"""An answer made from the timeline news that woke a long-poll (``dagcore.sync.news``) is the
full build's answer: compared here, body for body, with ``build_sync_response`` from the same
token, over the cases it answers; and it declines (None) the cases it must leave to a build."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dagcore.actions import push_rules as push_actions
from dagcore.actions.e2e_keys import KEY_COUNTS_STREAM, check_key_upload, do_claim_keys, do_upload_keys
from dagcore.actions.filters import DEFAULT_FILTER, SyncFilter, parse_filter
from dagcore.actions.push_rules import SAVE_COUNTER_EVERY
from dagcore.clock import now_ms
from dagcore.models import User
from dagcore.notifier import Change, add_listener, remove_listener
from dagcore.store import accounts as account_store
from dagcore.store.streams import get_stream_positions
from dagcore.sync import SyncRequest, SyncResult, build_sync_response
from dagcore.sync import basis as basis_module
from dagcore.sync.basis import SyncBasis, TimelineNews
from dagcore.sync.memory import sent_members
from dagcore.sync.news import answer_from_news
from dagcore.sync.tokens import SyncToken
from tests.actions.roomkit import make_room, make_user, say, set_state
from tests.api.test_sync_queries import room_of_members
from tests.support.e2e_keys import DeviceKeys
from tribune.sync.notifier import RECENT_CHANGES, WaiterRegistry

pytestmark = pytest.mark.django_db


def request_of(user: User, since: str, sync_filter: SyncFilter = DEFAULT_FILTER) -> SyncRequest:
    return SyncRequest(
        user_id=user.user_id,
        device_id="DEV",
        device_key="DEV",
        since=SyncToken.parse(since),
        full_state=False,
        filter=sync_filter,
    )


def basis_of(result: SyncResult) -> SyncBasis:
    assert result.basis is not None and result.basis.now == result.next_batch
    return result.basis


def news_of(*rooms: str) -> TimelineNews:
    return TimelineNews(frozenset(rooms), get_stream_positions()["events"])


def _drop_ages(value: Any) -> None:
    if isinstance(value, dict):
        unsigned = value.get("unsigned")
        if isinstance(unsigned, dict):
            unsigned.pop("age", None)
        for item in value.values():
            _drop_ages(item)
    elif isinstance(value, list):
        for item in value:
            _drop_ages(item)


def without_ages(body: dict[str, Any]) -> dict[str, Any]:
    """The body without ``next_batch`` and the events' ``unsigned.age``, bundled ones too (the
    clock moved between the two answers)."""
    body = copy.deepcopy(body)
    body.pop("next_batch")
    _drop_ages(body)
    return body


def assert_same_answer(fast: SyncResult | None, full: SyncResult) -> None:
    assert fast is not None
    assert without_ages(fast.body) == without_ages(full.body)
    assert fast.has_news and full.has_news and fast.complete
    # The events stream moves to the same position; the others may lag (nothing there for the sync).
    assert fast.next_batch.events == full.next_batch.events
    assert all(getattr(fast.next_batch, s) <= getattr(full.next_batch, s) for s in ("to_device", "receipts"))
    assert fast.room_ids == full.room_ids


def answer_both(
    user: User, since: str, basis: SyncBasis, news: TimelineNews, sync_filter: SyncFilter = DEFAULT_FILTER
) -> tuple[SyncResult | None, SyncResult]:
    request = request_of(user, since, sync_filter)
    fast = answer_from_news(request, basis, news, now_ms=now_ms())
    return fast, build_sync_response(request=request)


def settled(user: User, since: str, sync_filter: SyncFilter = DEFAULT_FILTER) -> SyncResult:
    """A build from ``since`` that finds nothing new: the basis a waiting long-poll holds."""
    result = build_sync_response(request=request_of(user, since, sync_filter))
    assert not result.has_news
    return result


def test_a_message_from_another_member_is_answered_as_a_build_would() -> None:
    sender, room, members, tokens = room_of_members(2)
    before = settled(members[0], tokens[0])
    say(sender, room, "hello")
    fast, full = answer_both(members[0], tokens[0], basis_of(before), news_of(room))
    assert_same_answer(fast, full)
    assert full.body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 2


def test_a_mention_counts_as_a_highlight_as_in_a_build() -> None:
    sender, room, members, tokens = room_of_members(1)
    before = settled(members[0], tokens[0])
    say(sender, room, f"hey {members[0].user_id}", **{"m.mentions": {"user_ids": [members[0].user_id]}})
    fast, full = answer_both(members[0], tokens[0], basis_of(before), news_of(room))
    assert_same_answer(fast, full)
    assert full.body["rooms"]["join"][room]["unread_notifications"]["highlight_count"] == 1


def test_the_senders_own_message_carries_its_transaction_id_and_reads_the_room() -> None:
    sender, room, members, _ = room_of_members(1)
    first = build_sync_response(request=replace(request_of(sender, "s0"), since=None))
    start = build_sync_response(request=request_of(sender, str(first.next_batch)))
    say(members[0], room, "to be read")
    say(sender, room, "mine")
    fast, full = answer_both(sender, str(start.next_batch), basis_of(start), news_of(room))
    assert_same_answer(fast, full)
    mine = full.body["rooms"]["join"][room]["timeline"]["events"][-1]
    assert "transaction_id" in mine["unsigned"]
    assert full.body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 0


def test_news_in_two_rooms_and_a_follower_of_the_answer() -> None:
    sender, room, members, tokens = room_of_members(1)
    member = members[0]
    other = make_room(member, preset="public_chat")
    step0 = build_sync_response(request=request_of(member, tokens[0]))
    say(sender, room, "one")
    say(member, other, "two")
    say(sender, room, "three")
    fast, full = answer_both(member, str(step0.next_batch), basis_of(step0), news_of(room, other))
    assert_same_answer(fast, full)
    assert fast is not None
    # The answer's own basis serves the next wake.
    say(sender, room, "four")
    again, full_again = answer_both(member, str(fast.next_batch), basis_of(fast), news_of(room))
    assert_same_answer(again, full_again)


def test_thread_counts_with_unread_thread_notifications() -> None:
    sender, room, members, tokens = room_of_members(1)
    threads = parse_filter({"room": {"timeline": {"unread_thread_notifications": True, "limit": 10}}})
    before = settled(members[0], tokens[0], threads)
    root = say(sender, room, "root")
    say(sender, room, "in thread", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    fast, full = answer_both(members[0], tokens[0], basis_of(before), news_of(room), threads)
    assert_same_answer(fast, full)
    assert "unread_thread_notifications" in full.body["rooms"]["join"][room]


def test_an_event_format_and_event_fields_filter_applies_as_in_a_build() -> None:
    sender, room, members, tokens = room_of_members(1)
    fields = parse_filter({"event_fields": ["content.body", "sender"], "room": {"timeline": {"limit": 5}}})
    before = settled(members[0], tokens[0], fields)
    say(sender, room, "short")
    fast, full = answer_both(members[0], tokens[0], basis_of(before), news_of(room), fields)
    assert_same_answer(fast, full)


def test_lazy_loaded_members_come_as_in_a_build_once_per_device() -> None:
    """Lazy-loading: a sender's member event comes with their first message this device sees,
    not again (spec "Lazy-loading room members"); each answer is compared with a build
    that starts from the same memory of what the device was sent."""
    sender, room, members, tokens = room_of_members(2)
    member, other = members
    lazy = parse_filter({"room": {"state": {"lazy_load_members": True}}})
    result = settled(member, tokens[0], lazy)
    key = (member.user_id, "DEV", basis_of(result).joined[room].room_nid)
    for speaker, expect_member in ((sender, True), (sender, False), (other, True), (other, False)):
        say(speaker, room, "hello")
        request, news = request_of(member, str(result.next_batch), lazy), news_of(room)
        remembered = sent_members.get(key)
        fast = answer_from_news(request, basis_of(result), news, now_ms=now_ms())
        sent_members.put(key, remembered, replace=True)
        full = build_sync_response(request=request)
        assert_same_answer(fast, full)
        state = full.body["rooms"]["join"][room]["state"]["events"]
        assert [e["state_key"] for e in state] == ([speaker.user_id] if expect_member else [])
        assert fast is not None
        result = fast


@pytest.mark.parametrize(
    "case",
    ["state event", "more than the limit", "timeline types", "ignored user", "not joined"],
)
def test_what_only_a_build_can_tell_is_left_to_it(case: str) -> None:
    sender, room, members, tokens = room_of_members(1)
    member = members[0]
    sync_filter = DEFAULT_FILTER
    if case == "timeline types":
        sync_filter = parse_filter({"room": {"timeline": {"types": ["m.room.message"]}}})
    elif case == "more than the limit":
        sync_filter = parse_filter({"room": {"timeline": {"limit": 2}}})
    before = settled(member, tokens[0], sync_filter)
    basis = basis_of(before)
    news_room = room
    if case == "state event":
        set_state(sender, room, "m.room.topic", {"topic": "news"})
    elif case == "more than the limit":
        for text in ("a", "b", "c"):
            say(sender, room, text)
    elif case == "ignored user":
        basis = replace(basis, ignored=frozenset({"@someone:elsewhere"}))
        say(sender, room, "hi")
    elif case == "not joined":
        news_room = make_room(make_user(), preset="public_chat")
        say(sender, room, "hi")
    else:
        say(sender, room, "hi")
    request = request_of(member, tokens[0], sync_filter)
    assert answer_from_news(request, basis, news_of(news_room), now_ms=now_ms()) is None


def test_an_answer_from_news_reads_only_the_new_events_and_the_unread_inputs() -> None:
    """The positions, memberships, account data and key counts are not read again; the new
    events were read by the first member woken with them (shared), the counts need the
    counters and receipts (one round trip)."""
    sender, room, members, tokens = room_of_members(2)
    bases = [basis_of(settled(m, t)) for m, t in zip(members, tokens, strict=True)]
    say(sender, room, "wake")
    news = news_of(room)
    first = answer_from_news(request_of(members[0], tokens[0]), bases[0], news, now_ms=now_ms())
    with CaptureQueriesContext(connection) as ctx:
        later = answer_from_news(request_of(members[1], tokens[1]), bases[1], news, now_ms=now_ms())
    assert first is not None and later is not None
    sql = [q["sql"] for q in ctx.captured_queries]
    assert len(sql) <= 2, sql
    assert not any("stream_counters" in s for s in sql), sql


def test_uploading_and_claiming_one_time_keys_reach_the_notifier(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Key counts are in every answer; one made from news reuses the last build's, so a change
    of them must come through the notifier (then the long-poll builds)."""
    owner, claimer = make_user(), make_user()
    device = DeviceKeys(owner.user_id, "KEYDEV")
    account_store.upsert_device(owner, "KEYDEV", None)
    changes: list[Change] = []
    add_listener(changes.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            upload = check_key_upload(
                {"device_keys": device.device_keys(), "one_time_keys": device.one_time_keys(1)},
                user_id=owner.user_id,
                device_id="KEYDEV",
            )
            do_upload_keys(user_id=owner.user_id, device_id="KEYDEV", upload=upload)
        assert [c.user_ids for c in changes if c.stream == KEY_COUNTS_STREAM] == [(owner.user_id,)]
        with django_capture_on_commit_callbacks(execute=True):
            claimed = do_claim_keys(wanted=[(owner.user_id, "KEYDEV", "signed_curve25519")])
        assert claimed["one_time_keys"][owner.user_id]["KEYDEV"]
        assert [c.user_ids for c in changes if c.stream == KEY_COUNTS_STREAM] == [(owner.user_id,)] * 2
        assert claimer.user_id not in {u for c in changes for u in c.user_ids}
    finally:
        remove_listener(changes.append)


# --------------------------------------------------------------------------- what the notifier saw


def registry_after(*changes: tuple[tuple[str, ...], tuple[str, ...], str, int]) -> tuple[WaiterRegistry, int]:
    """A registry that saw ``changes`` ``(users, rooms, stream, position)`` after generation 1."""
    registry = WaiterRegistry()
    registry.dispatch((), ("!start",), "events", 10)
    for users, rooms, stream, position in changes:
        registry.dispatch(users, rooms, stream, position)
    return registry, 1


WATCHED = frozenset({"!a", "!b"})


def test_the_notifier_tells_timeline_news_of_the_watched_rooms() -> None:
    registry, since = registry_after(
        ((), ("!a",), "events", 11), ((), ("!elsewhere",), "events", 12), ((), ("!b",), "events", 13)
    )
    now, news = registry.timeline_news(since, "@me:x", WATCHED, 10)
    assert now == registry.generation and news == TimelineNews(frozenset({"!a", "!b"}), 13)
    # Events of other rooms after the last watched one still move the position on.
    registry.dispatch((), ("!elsewhere",), "events", 14)
    assert registry.timeline_news(since, "@me:x", WATCHED, 10)[1] == TimelineNews(frozenset({"!a", "!b"}), 14)


@pytest.mark.parametrize(
    "changes",
    [
        # A position not announced yet (another process's event on its way): it may be in a watched room.
        (((), ("!a",), "events", 12),),
        # Anything but timeline events that concerns the sync: typing, receipts, the user's own streams.
        (((), ("!a",), "events", 11), ((), ("!a",), "typing", 3)),
        (((), ("!a",), "events", 11), (("@me:x",), (), "to_device", 5)),
        (((), ("!a",), "events", 11), (("@me:x",), (), KEY_COUNTS_STREAM, 0)),
        # An event naming the user (their membership somewhere).
        ((("@me:x",), ("!c",), "events", 11),),
        # Only other rooms' events: nothing to answer with.
        (((), ("!elsewhere",), "events", 11),),
    ],
)
def test_the_notifier_leaves_anything_else_to_a_build(changes: Any) -> None:
    registry, since = registry_after(*changes)
    assert registry.timeline_news(since, "@me:x", WATCHED, 10)[1] is None


def test_events_the_answer_held_already_are_not_news() -> None:
    """Announced after the answer's generation, committed before it read the positions."""
    registry, since = registry_after(((), ("!a",), "events", 10), ((), ("!b",), "events", 11))
    assert registry.timeline_news(since, "@me:x", WATCHED, 10)[1] == TimelineNews(frozenset({"!b"}), 11)
    assert registry.timeline_news(since, "@me:x", WATCHED, 11)[1] is None


def test_changes_older_than_the_notifier_remembers_are_left_to_a_build() -> None:
    registry = WaiterRegistry()
    for position in range(1, RECENT_CHANGES + 3):
        registry.dispatch((), ("!a",), "events", position)
    assert registry.timeline_news(1, "@me:x", WATCHED, 1)[1] is None


def test_a_chain_of_answers_counts_on_from_the_kept_counters_as_a_build_counts() -> None:
    """Answer after answer from news, across the counter's periodic write, equal to a full
    build each time; the counters and receipts are not read again once a build counted them."""
    sender, room, members, tokens = room_of_members(1)
    member = members[0]
    say(sender, room, "counted by a build")
    result = build_sync_response(request=request_of(member, tokens[0]))
    assert basis_of(result).joined[room].room_nid in basis_of(result).unread
    full = result
    for i in range(SAVE_COUNTER_EVERY + 5):
        if i % 7 == 3:
            say(member, room, "my own reads the room")
        else:
            say(sender, room, f"message {i} for {member.user_id}" if i % 5 == 0 else f"message {i}")
        request, news = request_of(member, str(result.next_batch)), news_of(room)
        with CaptureQueriesContext(connection) as ctx:
            fast = answer_from_news(request, basis_of(result), news, now_ms=now_ms())
        full = counted_from_scratch(member, request)
        assert_same_answer(fast, full)
        assert fast is not None
        reads = [q["sql"] for q in ctx.captured_queries if "FROM unread_counters" in q["sql"]]
        assert reads == [], reads
        result = fast
    # What the answers wrote and kept in memory: a build that may use it counts the same.
    counted = build_sync_response(request=request_of(member, tokens[0]))
    last = full.body["rooms"]["join"][room]["unread_notifications"]
    assert counted.body["rooms"]["join"][room]["unread_notifications"] == last


def counted_from_scratch(user: User, request: SyncRequest) -> SyncResult:
    """A full build that counts from the receipts alone: no counter row, nothing in memory
    (so it cannot take over a miscount of the answers it is compared with)."""
    with connection.cursor() as cur:
        cur.execute("DELETE FROM unread_counters WHERE user_id = %s", [user.user_id])
    push_actions._counters_ahead.clear()
    return build_sync_response(request=request)


def test_a_room_news_answer_reads_no_counter_once_a_build_counted_it() -> None:
    sender, room, members, tokens = room_of_members(1)
    say(sender, room, "counted by a build")
    result = build_sync_response(request=request_of(members[0], tokens[0]))
    say(sender, room, "then from news")
    news = news_of(room)
    answer_from_news(request_of(members[0], str(result.next_batch)), basis_of(result), news, now_ms=now_ms())
    with CaptureQueriesContext(connection) as ctx:
        again = answer_from_news(
            request_of(members[0], str(result.next_batch)), basis_of(result), news, now_ms=now_ms()
        )
    assert again is not None
    assert [q["sql"] for q in ctx.captured_queries] == []


def test_a_user_in_more_rooms_than_a_basis_holds_keeps_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each remembered answer keeps its basis (a few hundred bytes per room): bounded."""
    _, _, members, tokens = room_of_members(1)
    make_room(members[0], preset="public_chat")
    monkeypatch.setattr(basis_module, "MAX_ROOMS", 1)
    assert build_sync_response(request=request_of(members[0], tokens[0])).basis is None
    monkeypatch.setattr(basis_module, "MAX_ROOMS", 2)
    assert build_sync_response(request=request_of(members[0], tokens[0])).basis is not None

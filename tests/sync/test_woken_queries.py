"""Statement-count guards of the two paths a busy room runs most (issue #12): a long-poll
woken by a message, and ``PUT /send`` — in-process, counted with Django's
``CaptureQueriesContext`` (what each request costs the database, not timings)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dagcore.actions.filters import DEFAULT_FILTER, FilterNotFound, resolve_sync_filter
from dagcore.actions.presence import do_sync_presence
from dagcore.store import filters as filter_store
from dagcore.sync import SyncRequest, build_sync_response
from dagcore.sync.tokens import SyncToken
from tests.actions.roomkit import say
from tests.api.test_sync_queries import room_of_members, timeline_bodies

pytestmark = pytest.mark.django_db


def statements(fn: Any) -> tuple[list[str], Any]:
    with CaptureQueriesContext(connection) as ctx:
        result = fn()
    return [q["sql"] for q in ctx.captured_queries], result


def request_of(user_id: str, since: str, *, presence: str | None = None) -> SyncRequest:
    return SyncRequest(
        user_id=user_id,
        device_id="DEV",
        device_key="DEV",
        since=SyncToken.parse(since),
        full_state=False,
        filter=DEFAULT_FILTER,
        presence=presence,
    )


def test_a_member_woken_by_a_message_costs_one_pipelined_read_and_its_unread_counter() -> None:
    """Positions, memberships, account data, key counts and presence (one round trip on
    PostgreSQL), the unread counter with the receipts, and the counter's upsert: the new
    event's timeline and relations were read by the first member woken with it."""
    sender, room, members, tokens = room_of_members(3)
    for member in members:
        do_sync_presence(user_id=member.user_id, set_presence=None)
    # Caught up with each other's presence, as long-polls that have been running a while.
    tokens = [
        build_sync_response(request=request_of(m.user_id, t)).body["next_batch"]
        for m, t in zip(members, tokens, strict=True)
    ]
    say(sender, room, "wake")
    first = build_sync_response(request=request_of(members[0].user_id, tokens[0], presence="online"))
    sql, later = statements(
        lambda: build_sync_response(request=request_of(members[1].user_id, tokens[1], presence="online"))
    )
    assert timeline_bodies(first, room) == timeline_bodies(later, room) == ["wake"]
    assert len(sql) <= 7, sql
    # Already online, and synced moments ago: presence is read, never locked or written.
    presence_writes = [s for s in sql if "presence" in s and not s.lstrip().upper().startswith("SELECT")]
    assert presence_writes == [] and not any("FOR UPDATE" in s for s in sql), sql


def test_a_sync_that_changes_presence_shows_it_in_the_same_answer() -> None:
    _, _, members, tokens = room_of_members(1)
    result = build_sync_response(request=request_of(members[0].user_id, tokens[0], presence="online"))
    own = [e for e in result.body.get("presence", {}).get("events", []) if e["sender"] == members[0].user_id]
    assert [e["content"]["presence"] for e in own] == ["online"]


def test_a_sync_filter_is_parsed_or_read_once_per_process() -> None:
    sender, _, _, _ = room_of_members(1)
    filter_id = str(
        filter_store.insert_filter(user_id=sender.user_id, definition={"room": {"timeline": {"limit": 7}}})
    )
    first = resolve_sync_filter(user_id=sender.user_id, value=filter_id)
    sql, again = statements(lambda: resolve_sync_filter(user_id=sender.user_id, value=filter_id))
    assert sql == [] and again is first and again.timeline_limit == 7
    inline = '{"room":{"timeline":{"limit":100}}}'
    assert resolve_sync_filter(user_id=sender.user_id, value=inline) is resolve_sync_filter(
        user_id="@someone:else", value=inline
    )
    # A stored filter is another user's to use only by its owner, cached or not.
    with pytest.raises(FilterNotFound):
        resolve_sync_filter(user_id="@someone:else", value=filter_id)


def test_sending_into_a_busy_room_holds_its_write_lock_for_six_statements() -> None:
    """Under the room's advisory lock: the room row, the transaction ID (checked and
    recorded), the room's head, the event row with its stream position, and the federation
    outbox's rows (one statement, whatever the room's servers). The event ID is reserved
    before the lock; the auth events of an unchanged current state are not read again."""
    sender, room, members, _ = room_of_members(3)
    say(sender, room, "warm")
    say(members[0], room, "hello")
    sql, _ = statements(lambda: say(sender, room, "hello again"))
    locked = next(i for i, s in enumerate(sql) if "pg_advisory_xact_lock" in s or "BEGIN IMMEDIATE" in s)
    after_lock = [s for s in sql[locked + 1 :] if not s.startswith(("RELEASE SAVEPOINT", "COMMIT"))]
    assert len(after_lock) <= 6, after_lock
    assert len(sql) <= 11, sql


def test_a_woken_rebuild_leaves_presence_alone() -> None:
    sender, room, members, tokens = room_of_members(1)
    request = replace(request_of(members[0].user_id, tokens[0]), presence=None)
    say(sender, room, "wake")
    sql, result = statements(lambda: build_sync_response(request=request))
    assert timeline_bodies(result, room) == ["wake"]
    assert not any("presence" in s for s in sql), sql


def test_put_send_through_the_endpoint_reads_the_rate_limit_override_with_the_token() -> None:
    """The whole request as Tribune serves it (authentication, rate limit, the send): the
    operator's ``override_ratelimit`` comes with the access token's one query, so a user with
    an override pays no statement more per message than one without — and it still applies."""
    import json

    from django.test import RequestFactory, override_settings

    from dagcore.ratelimit import reset_local_buckets
    from dagcore.store import accounts as account_store
    from dagcore.store import console as console_store
    from tests.actions.roomkit import dagma_with
    from tribune.views.events import send_message

    sender, room, _, _ = room_of_members(2)
    say(sender, room, "warm")
    token = account_store.create_access_token(sender, None)
    factory = RequestFactory()

    def put(txn: str) -> Any:
        request = factory.put(
            f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}",
            data=json.dumps({"msgtype": "m.text", "body": txn}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        return send_message(request, room_id=room, event_type="m.room.message", txn_id=txn)

    with override_settings(DAGMA=dagma_with(rc_message={"per_second": 1000.0, "burst_count": 10000.0})):
        reset_local_buckets()
        plain, answer = statements(lambda: put("t1"))
        assert answer.status_code == 200, answer.content
        console_store.set_ratelimit_override(user=sender, messages_per_second=1, burst_count=1)
        overridden, answer = statements(lambda: put("t2"))
        assert answer.status_code == 200, answer.content
        assert not any("ratelimit_overrides" in s for s in overridden[1:]), overridden
        assert len(overridden) == len(plain), (plain, overridden)
        assert len(plain) <= 12, plain
        # The override (1 message, burst 1) is in force: the bucket is empty now.
        assert put("t3").status_code == 429

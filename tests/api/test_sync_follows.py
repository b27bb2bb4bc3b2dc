"""A long-poll that follows the answer it got (``tribune.sync.answered``): it authenticates and
waits without building, and everything a build would have found still reaches it at once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from tests.api.test_sync import bodies, sync, timeline, uid
from tests.api.test_to_device import send_numbered, to_device
from tests.support.client import MatrixClient, q
from tests.support.live import advance_clock, wait_for, wait_for_waiters
from tribune.sync.answered import PRESENCE_FRESH_MS

ROUTE = "/_matrix/client/v3/sync"


def sync_lines(log_path: Path, user_id: str) -> list[dict[str, Any]]:
    """The access lines of this user's ``/sync`` requests, oldest first."""
    out = []
    for raw in log_path.read_text().splitlines():
        if ROUTE not in raw or user_id not in raw:
            continue
        line = json.loads(raw[raw.index("{") :])
        if line.get("route") == ROUTE and line.get("requester") == user_id:
            out.append(line)
    return out


def long_poll(client: MatrixClient, since: str, out: dict[str, Any], **params: Any) -> threading.Thread:
    def poll() -> None:
        started = time.monotonic()
        out["body"] = sync(client, since, timeout=20000, **params)
        out["elapsed"] = time.monotonic() - started

    t = threading.Thread(target=poll)
    t.start()
    return t


def woken_statements(
    client: MatrixClient, room: str, log_path: Path, since: str, *, answered_before: int, **params: Any
) -> int:
    """The statements of a long-poll from ``since``, woken by one message.

    ``answered_before``: how many ``/sync`` requests of this user were answered before it.
    The server writes its log lines in batches (``dagma_project.logging``), so the lines of
    earlier requests may still be on their way: the long-poll's is the one after them.
    """
    out: dict[str, Any] = {}
    t = long_poll(client, since, out, **params)
    wait_for_waiters(client.base_url, uid(client))
    MatrixClient(client.base_url, client.access_token).send(room, "wake")
    t.join(15)
    assert not t.is_alive(), "the long-poll was not woken"
    assert bodies(timeline(out["body"], room)) == ["wake"]
    lines = wait_for(
        lambda: (ls := sync_lines(log_path, uid(client)))[answered_before:] and ls, "the access line"
    )
    return int(lines[answered_before]["db_queries"])


def test_a_long_poll_that_follows_its_answer_only_authenticates_before_it_waits(
    make_client, dagma_server
) -> None:
    alice = make_client()
    room = alice.create_room()
    sync(alice)  # marks her online
    first = sync(alice)  # caught up, presence checked: its answer is remembered
    following = woken_statements(alice, room, dagma_server.log_path, first["next_batch"], answered_before=2)
    # The same long-poll from a token this process did not answer with these parameters
    # (``set_presence=online`` is the default's meaning, but another key) builds before it waits.
    again = sync(alice, first["next_batch"])
    building = woken_statements(
        alice, room, dagma_server.log_path, again["next_batch"], answered_before=4, set_presence="online"
    )
    # Following: the access token's owner, then the woken build (positions, memberships,
    # account data, key counts, the new event and its relations, the sender's transaction
    # ID, unread counts): 9, and now and then one write more (the device's "last seen",
    # once a minute). Building adds a first build: positions, memberships, account data,
    # key counts and presence.
    assert following <= 10, following
    assert building >= following + 4, (following, building)


def test_a_following_long_poll_builds_again_once_its_presence_check_is_old(make_client, dagma_server) -> None:
    """A remembered answer stands in for the presence check (``set_presence``) for half of
    ``SYNC_TOUCH_MS`` only: after that the long-poll builds first, which checks presence."""
    alice = make_client()
    room = alice.create_room()
    sync(alice)
    first = sync(alice)
    following = woken_statements(alice, room, dagma_server.log_path, first["next_batch"], answered_before=2)
    again = sync(alice, first["next_batch"])
    advance_clock(alice.base_url, PRESENCE_FRESH_MS + 1000)
    stale = woken_statements(alice, room, dagma_server.log_path, again["next_batch"], answered_before=4)
    assert stale >= following + 4, (following, stale)


def test_a_change_made_between_the_answer_and_the_long_poll_is_answered_at_once(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    answer = sync(bob)
    alice.send(room, "while you were away")
    started = time.monotonic()
    body = sync(bob, answer["next_batch"], timeout=20000)
    assert time.monotonic() - started < 5
    assert bodies(timeline(body, room)) == ["while you were away"]


def test_a_token_logged_out_after_its_answer_is_refused_at_once(make_client) -> None:
    alice = make_client()
    alice.create_room()
    answer = sync(alice)
    token = alice.access_token
    alice.post("/logout", {})
    poller = MatrixClient(alice.base_url, token)
    started = time.monotonic()
    r = poller.get("/sync", params={"since": answer["next_batch"], "timeout": 20000}, expect=401)
    assert time.monotonic() - started < 5
    assert r.json["errcode"] == "M_UNKNOWN_TOKEN"


def test_a_following_long_poll_woken_by_other_news_answers_incrementally(make_client) -> None:
    """Woken by something other than new timeline events (here typing), the follower builds
    from its own ``since``: the answer holds the typing and none of the room's history."""
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    alice.send(room, "history")
    sync(bob)
    first = sync(bob)  # caught up: remembered for its follower
    out: dict[str, Any] = {}
    t = long_poll(bob, first["next_batch"], out)
    wait_for_waiters(bob.base_url, uid(bob))
    alice.put(f"/rooms/{q(room)}/typing/{q(uid(alice))}", {"typing": True, "timeout": 30000})
    t.join(15)
    assert not t.is_alive(), "the long-poll was not woken"
    joined = out["body"]["rooms"]["join"][room]
    assert [e["content"]["user_ids"] for e in joined["ephemeral"]["events"]] == [[uid(alice)]]
    assert bodies(timeline(out["body"], room)) == []
    assert not joined.get("state", {}).get("events")


def test_a_to_device_backlog_is_not_remembered_its_rest_comes_at_once(make_client) -> None:
    alice, bob = make_client(), make_client()
    first = sync(bob)
    total = 130  # more than one sync delivers (100)
    send_numbered(alice, bob, total)
    part = sync(bob, first["next_batch"])
    assert len(to_device(part)) == 100
    started = time.monotonic()
    rest = sync(bob, part["next_batch"], timeout=20000)
    assert time.monotonic() - started < 5
    assert [e["content"]["i"] for e in to_device(rest)] == list(range(100, total))


def test_a_long_poll_woken_by_a_message_is_answered_from_it(make_client, dagma_server) -> None:
    """Woken by a new message only, a following long-poll reads the message (shared with the
    other members woken by it) and what counting it needs; not the positions, memberships,
    account data and key counts again (``dagcore.sync.news``)."""
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    sync(bob)
    first = sync(bob)
    out: dict[str, Any] = {}
    t = long_poll(bob, first["next_batch"], out)
    wait_for_waiters(bob.base_url, uid(bob))
    alice.send(room, "wake")
    t.join(15)
    assert not t.is_alive(), "the long-poll was not woken"
    assert bodies(timeline(out["body"], room)) == ["wake"]
    assert out["body"]["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 1
    assert "device_one_time_keys_count" in out["body"]
    lines = wait_for(
        lambda: (ls := sync_lines(dagma_server.log_path, uid(bob)))[2:] and ls, "the access line"
    )
    # The token's owner, then the new event, its relations, the room's power levels (once per
    # state) and, the room not being counted by a build yet, the counters with the receipts.
    statements = int(lines[2]["db_queries"])
    assert statements <= 5, statements

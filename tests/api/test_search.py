"""Server-side search (``POST /search``) against a live server, answers validated against the spec."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer

SPEC = "/search"


def search(
    client: MatrixClient, term: str, *, expect: int = 200, next_batch: str | None = None, **criteria: Any
):
    body = {"search_categories": {"room_events": {"search_term": term, **criteria}}}
    params = {"next_batch": next_batch} if next_batch else None
    r = client.post("/search", body, params=params, expect=expect, spec=SPEC)
    return r.json["search_categories"]["room_events"] if expect == 200 else r.json


def ids(found: dict[str, Any]) -> list[str]:
    return [r["result"]["event_id"] for r in found["results"]]


@pytest.fixture
def pair(make_client):
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="private_chat", invite=[bob.user_id], name="Search Party")
    bob.join(room)
    return alice, bob, room


def test_messages_are_found_by_every_word_prefix_case_insensitively(pair) -> None:
    alice, bob, room = pair
    word = f"zebra{secrets.token_hex(3)}"
    hit = alice.send(room, f"The {word.upper()} crossed the Road")
    alice.send(room, f"the {word} stayed")  # lacks "road"
    alice.send(room, "nothing to see")
    found = search(bob, f"{word} roa")
    assert ids(found) == [hit] and found["count"] == 1
    assert set(found["highlights"]) == {word, "roa"}
    assert found["results"][0]["rank"] > 0
    assert "next_batch" not in found


def test_only_joined_rooms_and_visible_history_are_searched(pair, make_client) -> None:
    alice, bob, room = pair
    word = f"secret{secrets.token_hex(3)}"
    alice.put(f"/rooms/{q(room)}/state/m.room.history_visibility/", {"history_visibility": "joined"})
    alice.send(room, f"{word} before carol")
    carol = make_client()
    mallory = make_client()
    alice.post(f"/rooms/{q(room)}/invite", {"user_id": carol.user_id})
    carol.join(room)
    after = alice.send(room, f"{word} after carol")
    assert len(ids(search(bob, word))) == 2  # control: a member since the start sees both
    assert ids(search(carol, word)) == [after]  # joined later: history before the join is hidden
    assert search(mallory, word)["results"] == []  # not a member
    bob.post(f"/rooms/{q(room)}/leave")
    assert search(bob, word)["results"] == []  # left rooms are not searched


def test_names_topics_keys_filters_and_order(pair) -> None:
    alice, bob, room = pair
    word = f"otter{secrets.token_hex(3)}"
    name_event = alice.put(f"/rooms/{q(room)}/state/m.room.name/", {"name": f"{word} den"}).json["event_id"]
    topic_event = alice.put(f"/rooms/{q(room)}/state/m.room.topic/", {"topic": f"all about {word}s"}).json[
        "event_id"
    ]
    once = alice.send(room, f"{word} once")
    twice = bob.send(room, f"{word} and {word} twice")
    everything = search(bob, word, order_by="recent")
    assert ids(everything) == [twice, once, topic_event, name_event]
    assert ids(search(bob, word, keys=["content.name"])) == [name_event]
    assert ids(search(bob, word, keys=["content.body"], filter={"senders": [alice.user_id]})) == [once]
    assert ids(search(bob, word, filter={"rooms": ["!elsewhere:localhost"]})) == []
    assert ids(search(bob, word, filter={"limit": 1}, order_by="recent")) == [twice]
    ranked = search(bob, word, keys=["content.body"])  # rank is the default order
    assert ids(ranked)[0] == twice and ranked["results"][0]["rank"] >= ranked["results"][1]["rank"]


def test_pagination_with_next_batch_returns_every_match_once(pair) -> None:
    alice, bob, room = pair
    word = f"pager{secrets.token_hex(3)}"
    sent = [alice.send(room, f"{word} {i}") for i in range(23)]
    pages, token = [], None
    for _ in range(5):
        found = search(bob, word, order_by="recent", next_batch=token, filter={"limit": 10})
        pages.append(ids(found))
        token = found.get("next_batch")
        if token is None:
            break
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [e for page in pages for e in page] == list(reversed(sent))


def test_event_context_with_profiles_groups_and_state(pair) -> None:
    alice, bob, room = pair
    alice.put(f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice A."})
    word = f"ctx{secrets.token_hex(3)}"
    first = alice.send(room, "first")
    hit = bob.send(room, f"{word} in the middle")
    last = alice.send(room, "last")
    found = search(
        alice,
        word,
        event_context={"before_limit": 1, "after_limit": 1, "include_profile": True},
        groupings={"group_by": [{"key": "room_id"}]},
        include_state=True,
    )
    [result] = found["results"]
    assert result["result"]["event_id"] == hit
    ctx = result["context"]
    assert [e["event_id"] for e in ctx["events_before"]] == [first]
    assert [e["event_id"] for e in ctx["events_after"]] == [last]
    assert ctx["profile_info"][alice.user_id]["displayname"] == "Alice A."
    assert bob.user_id in ctx["profile_info"]
    # The context tokens are room tokens /messages accepts.
    alice.get(
        f"/rooms/{q(room)}/messages",
        params={"from": ctx["start"], "dir": "b"},
        spec="/rooms/{roomId}/messages",
    )
    assert found["groups"]["room_id"][room]["results"] == [hit]
    assert any(e["type"] == "m.room.name" for e in found["state"][room])


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({}, "M_BAD_JSON"),
        ({"search_categories": {}}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": {}}}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": {"search_term": "  "}}}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": {"search_term": 5}}}, "M_BAD_JSON"),
        ({"search_categories": {"room_events": {"search_term": "x" * 513}}}, "M_INVALID_PARAM"),
        (
            {"search_categories": {"room_events": {"search_term": "x", "keys": ["content.msgtype"]}}},
            "M_INVALID_PARAM",
        ),
        ({"search_categories": {"room_events": {"search_term": "x", "keys": []}}}, "M_INVALID_PARAM"),
        (
            {"search_categories": {"room_events": {"search_term": "x", "order_by": "random"}}},
            "M_INVALID_PARAM",
        ),
        (
            {"search_categories": {"room_events": {"search_term": "x", "filter": {"limit": -1}}}},
            "M_INVALID_PARAM",
        ),
        ({"search_categories": {"room_events": {"search_term": "x", "filter": "no"}}}, "M_INVALID_PARAM"),
        (
            {
                "search_categories": {
                    "room_events": {"search_term": "x", "event_context": {"before_limit": -1}}
                }
            },
            "M_INVALID_PARAM",
        ),
        (
            {"search_categories": {"room_events": {"search_term": "x", "groupings": {"group_by": [{}]}}}},
            "M_INVALID_PARAM",
        ),
    ],
)
def test_bad_search_bodies_are_refused(pair, body: dict[str, Any], errcode: str) -> None:
    _, bob, _ = pair
    r = bob.post("/search", body, expect=400)
    assert r.json["errcode"] == errcode


def test_a_bad_next_batch_is_refused(pair) -> None:
    _, bob, _ = pair
    body = {"search_categories": {"room_events": {"search_term": "x"}}}
    for token in ("abc", "-1", "9" * 40):
        assert (
            bob.post("/search", body, params={"next_batch": token}, expect=400).json["errcode"]
            == "M_INVALID_PARAM"
        )
    assert bob.post("/search", body, auth=False, expect=401).json["errcode"] == "M_MISSING_TOKEN"


def test_search_on_the_quick_start_database(tmp_path) -> None:
    """SQLite (the quick start) runs the per-room scans one by one: same answers."""
    server = LiveServer(tmp_path, database="sqlite", redis=False).start()
    try:
        alice, bob = MatrixClient(server.base_url).register(), MatrixClient(server.base_url).register()
        room = alice.create_room(invite=[bob.user_id])
        bob.join(room)
        other = alice.create_room(invite=[bob.user_id])
        bob.join(other)
        hits = [alice.send(room, "sqlite lookup one"), alice.send(other, "sqlite lookup two")]
        alice.send(room, "unrelated")
        found = search(bob, "SQLite look", order_by="recent")
        assert ids(found) == list(reversed(hits))
    finally:
        server.destroy()

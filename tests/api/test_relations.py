"""Relations (edits, reactions, threads), bundled aggregations and the threads list over HTTP."""

from __future__ import annotations

from tests.support.client import q

V1 = "/_matrix/client/v1"
RELATIONS = "/rooms/{roomId}/relations/{eventId}"


def _reply(c, room: str, root: str, body: str) -> str:
    return c.send(
        room,
        content={
            "msgtype": "m.text",
            "body": body,
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": root},
            },
        },
    )


def _react(c, room: str, target: str, key: str) -> str:
    return c.send(
        room,
        event_type="m.reaction",
        content={"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}},
    )


def _edit(c, room: str, target: str, body: str) -> str:
    return c.send(
        room,
        content={
            "msgtype": "m.text",
            "body": f"* {body}",
            "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        },
    )


def test_relations_filter_by_type_and_event_type_and_paginate(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    root = alice.send(room, "root")
    reactions = [_react(bob, room, root, k) for k in ("👍", "🎉", "😀")]
    edit = _edit(alice, room, root, "root (edited)")
    base = f"{V1}/rooms/{q(room)}/relations/{q(root)}"

    everything = alice.get(base, params={"limit": 50}, spec=RELATIONS).json
    assert {e["event_id"] for e in everything["chunk"]} == {*reactions, edit}
    annotations = alice.get(f"{base}/m.annotation", params={"limit": 50}, spec=RELATIONS + "/{relType}").json
    assert [e["event_id"] for e in annotations["chunk"]] == list(reversed(reactions))  # newest first
    typed = alice.get(
        f"{base}/m.annotation/m.reaction", params={"limit": 50}, spec=RELATIONS + "/{relType}/{eventType}"
    ).json
    assert len(typed["chunk"]) == 3
    assert (
        alice.get(f"{base}/m.annotation/m.room.message", spec=RELATIONS + "/{relType}/{eventType}").json[
            "chunk"
        ]
        == []
    )

    page1 = alice.get(f"{base}/m.annotation", params={"limit": 2}, spec=RELATIONS + "/{relType}").json
    assert [e["event_id"] for e in page1["chunk"]] == [reactions[2], reactions[1]]
    page2 = alice.get(
        f"{base}/m.annotation",
        params={"limit": 2, "from": page1["next_batch"]},
        spec=RELATIONS + "/{relType}",
    ).json
    assert [e["event_id"] for e in page2["chunk"]] == [reactions[0]] and "next_batch" not in page2
    forward = alice.get(
        f"{base}/m.annotation", params={"limit": 2, "dir": "f"}, spec=RELATIONS + "/{relType}"
    ).json
    assert [e["event_id"] for e in forward["chunk"]] == reactions[:2]


def test_relations_of_invisible_or_unknown_events_are_404(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = alice.create_room()
    root = alice.send(room, "root")
    mallory.get(f"{V1}/rooms/{q(room)}/relations/{q(root)}", expect=403)
    r = alice.get(f"{V1}/rooms/{q(room)}/relations/{q('$missing')}", expect=404, spec=RELATIONS)
    assert r.json["errcode"] == "M_NOT_FOUND"
    alice.get(f"{V1}/rooms/{q(room)}/relations/{q(root)}", params={"recurse": "maybe"}, expect=400)
    alice.get(f"{V1}/rooms/{q(room)}/relations/{q(root)}", params={"dir": "sideways"}, expect=400)


def test_recursive_relations_include_reactions_to_thread_replies(make_client) -> None:
    alice = make_client()
    room = alice.create_room()
    root = alice.send(room, "root")
    reply = _reply(alice, room, root, "in thread")
    reaction = _react(alice, room, reply, "👀")
    base = f"{V1}/rooms/{q(room)}/relations/{q(root)}"
    flat = alice.get(base, spec=RELATIONS).json
    assert [e["event_id"] for e in flat["chunk"]] == [reply]
    deep = alice.get(base, params={"recurse": "true"}, spec=RELATIONS).json
    assert {e["event_id"] for e in deep["chunk"]} == {reply, reaction}
    assert deep["recursion_depth"] == 2


def test_bundled_aggregations_carry_the_thread_summary_and_the_latest_edit(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    root = alice.send(room, "root")
    _reply(bob, room, root, "reply 1")
    last = _reply(alice, room, root, "reply 2")
    _edit(alice, room, root, "first edit")
    latest_edit = _edit(alice, room, root, "second edit")
    _edit(bob, room, root, "an edit by someone else is not valid")
    event = alice.get(f"/rooms/{q(room)}/event/{q(root)}", spec="/rooms/{roomId}/event/{eventId}").json
    relations = event["unsigned"]["m.relations"]
    assert relations["m.thread"]["count"] == 2
    assert relations["m.thread"]["latest_event"]["event_id"] == last
    assert relations["m.thread"]["current_user_participated"] is True
    assert relations["m.replace"]["event_id"] == latest_edit
    assert event["content"]["body"] == "root"  # the original content is served (spec v1.7)
    messages = alice.get(f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 20}).json["chunk"]
    in_page = next(e for e in messages if e["event_id"] == root)
    assert in_page["unsigned"]["m.relations"]["m.thread"]["count"] == 2


def test_threads_list_newest_activity_first_and_participated_filter(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    t1 = alice.send(room, "thread one")
    t2 = bob.send(room, "thread two")
    t3 = bob.send(room, "thread three")
    _reply(bob, room, t1, "r")
    _reply(bob, room, t2, "r")
    _reply(bob, room, t3, "r")
    _reply(alice, room, t2, "latest activity")
    path = f"{V1}/rooms/{q(room)}/threads"
    spec = "/rooms/{roomId}/threads"
    page1 = alice.get(path, params={"limit": 2}, spec=spec).json
    assert [e["event_id"] for e in page1["chunk"]] == [t2, t3]
    page2 = alice.get(path, params={"limit": 2, "from": page1["next_batch"]}, spec=spec).json
    assert [e["event_id"] for e in page2["chunk"]] == [t1]
    mine = alice.get(path, params={"include": "participated"}, spec=spec).json
    assert {e["event_id"] for e in mine["chunk"]} == {t1, t2}
    assert page1["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"] == 2
    alice.get(path, params={"include": "some"}, expect=400)
    alice.get(path, params={"from": "garbage"}, expect=400)

"""Room aliases, directory visibility and /publicRooms over HTTP."""

from __future__ import annotations

import secrets

import pytest

from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer

ALIAS = "/directory/room/{roomAlias}"


def _alias() -> str:
    return f"#a{secrets.token_hex(4)}:localhost"


def test_alias_lifecycle_and_refusals(make_client) -> None:
    alice, bob, mallory = make_client(), make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    alias = _alias()
    path = f"/directory/room/{q(alias)}"
    # Not in the room: refused. In the room: created.
    mallory.put(path, {"room_id": room}, expect=403)
    bob.put(path, {"room_id": room}, spec=ALIAS)
    got = mallory.get(path, spec=ALIAS).json
    assert got == {"room_id": room, "servers": ["localhost"]}
    # Overwriting an existing alias is 409.
    clash = alice.put(path, {"room_id": room}, expect=409, spec=ALIAS)
    assert clash.json["errcode"] == "M_UNKNOWN"
    aliases = alice.get(f"/rooms/{q(room)}/aliases", spec="/rooms/{roomId}/aliases").json["aliases"]
    assert alias in aliases
    # A stranger may not delete it; its creator may.
    mallory.delete(path, expect=403)
    bob.delete(path, spec=ALIAS)
    assert alice.get(path, expect=404, spec=ALIAS).json["errcode"] == "M_NOT_FOUND"


def test_room_admins_delete_others_aliases(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    alias = _alias()
    path = f"/directory/room/{q(alias)}"
    bob.put(path, {"room_id": room}, spec=ALIAS)
    assert alias in alice.get(f"/rooms/{q(room)}/aliases").json["aliases"]
    # Alice, the room's admin, did not create the alias and still may delete it: it is gone.
    alice.delete(path, spec=ALIAS)
    assert alice.get(path, expect=404, spec=ALIAS).json["errcode"] == "M_NOT_FOUND"
    assert alias not in alice.get(f"/rooms/{q(room)}/aliases", spec="/rooms/{roomId}/aliases").json["aliases"]


def test_bad_aliases_and_rooms(make_client) -> None:
    alice = make_client()
    room = alice.create_room()
    assert (
        alice.put(f"/directory/room/{q('#x:elsewhere.example')}", {"room_id": room}, expect=400).json[
            "errcode"
        ]
        == "M_INVALID_PARAM"
    )
    assert (
        alice.put(f"/directory/room/{q('nope')}", {"room_id": room}, expect=400).json["errcode"]
        == "M_INVALID_PARAM"
    )
    assert alice.put(f"/directory/room/{q(_alias())}", {}, expect=400).json["errcode"] == "M_MISSING_PARAM"
    assert (
        alice.put(f"/directory/room/{q(_alias())}", {"room_id": "!nope:localhost"}, expect=404).json[
            "errcode"
        ]
        == "M_NOT_FOUND"
    )
    assert (
        alice.get(f"/directory/room/{q('#x:elsewhere.example')}", expect=404, spec=ALIAS).json["errcode"]
        == "M_NOT_FOUND"
    )


def test_room_aliases_need_membership(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = alice.create_room()
    r = mallory.get(f"/rooms/{q(room)}/aliases", expect=403, spec="/rooms/{roomId}/aliases")
    assert r.json["errcode"] == "M_FORBIDDEN"


def test_directory_visibility_needs_power(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    path = f"/directory/list/room/{q(room)}"
    spec = "/directory/list/room/{roomId}"
    assert alice.get(path, spec=spec).json == {"visibility": "private"}
    bob.put(path, {"visibility": "public"}, expect=403)
    alice.put(path, {"visibility": "public"}, spec=spec)
    assert bob.get(path, spec=spec).json == {"visibility": "public"}
    alice.put(path, {"visibility": "hidden"}, expect=400)
    alice.get(f"/directory/list/room/{q('!nope:localhost')}", expect=404, spec=spec)


def test_public_rooms_search_and_room_types(make_client) -> None:
    alice = make_client()
    needle = secrets.token_hex(6)
    room = alice.create_room(visibility="public", name=f"Needle {needle}", topic="about needles")
    space = alice.create_room(
        visibility="public", name=f"Space {needle}", creation_content={"type": "m.space"}
    )
    spec = "/publicRooms"
    found = alice.post("/publicRooms", {"filter": {"generic_search_term": needle}}, spec=spec).json
    assert {c["room_id"] for c in found["chunk"]} == {room, space}
    chunk = next(c for c in found["chunk"] if c["room_id"] == room)
    assert chunk["name"] == f"Needle {needle}" and chunk["topic"] == "about needles"
    assert (
        chunk["num_joined_members"] == 1
        and chunk["world_readable"] is False
        and chunk["guest_can_join"] is False
    )
    spaces = alice.post(
        "/publicRooms", {"filter": {"generic_search_term": needle, "room_types": ["m.space"]}}, spec=spec
    ).json
    assert [c["room_id"] for c in spaces["chunk"]] == [space]
    assert spaces["chunk"][0]["room_type"] == "m.space"
    alice.post("/publicRooms", {"limit": "ten"}, expect=400)
    alice.post("/publicRooms", {"since": "garbage"}, expect=400)
    # Another server's directory is asked over federation: one that cannot be reached is a 502 naming it.
    unreachable = alice.get("/publicRooms", params={"server": "elsewhere.example"}, expect=502).json
    assert "elsewhere.example" in unreachable["error"]


def test_public_rooms_need_auth_by_default(make_client, dagma_server) -> None:
    anonymous = MatrixClient(dagma_server.base_url)
    try:
        r = anonymous.get("/publicRooms", expect=401, auth=False)
        assert r.json["errcode"] == "M_MISSING_TOKEN"
    finally:
        anonymous.close()
    make_client().get("/publicRooms", spec="/publicRooms")


@pytest.fixture
def open_directory(tmp_path):
    server = LiveServer(tmp_path, config={"allow_public_rooms_without_auth": True}).start()
    yield server
    server.destroy()


def test_public_rooms_paginate_both_ways_without_auth_when_allowed(open_directory) -> None:
    alice = MatrixClient(open_directory.base_url).register()
    rooms = [alice.create_room(visibility="public", name=f"room {i}") for i in range(5)]
    anonymous = MatrixClient(open_directory.base_url)
    try:
        seen: list[str] = []
        since = None
        pages = []
        while True:
            params: dict = {"limit": 2}
            if since:
                params["since"] = since
            page = anonymous.get("/publicRooms", params=params, auth=False, spec="/publicRooms").json
            pages.append(page)
            seen.extend(c["room_id"] for c in page["chunk"])
            assert page["total_room_count_estimate"] == 5
            if "next_batch" not in page:
                break
            since = page["next_batch"]
        assert sorted(seen) == sorted(rooms) and len(pages) == 3
        back = anonymous.get(
            "/publicRooms", params={"limit": 2, "since": pages[2]["prev_batch"]}, auth=False
        ).json
        assert back["chunk"] == pages[1]["chunk"]
    finally:
        anonymous.close()
        alice.close()

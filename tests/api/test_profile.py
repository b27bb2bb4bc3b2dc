"""Profiles and the user directory against a live server.

Spec: client-server API "Profiles" and "User directory".
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer


def _member(viewer: MatrixClient, room_id: str, user_id: str) -> dict[str, Any]:
    path = f"/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}"
    content: dict[str, Any] = viewer.get(path).json
    return content


# --------------------------------------------------------------------------- profiles


def test_new_account_profile_has_the_localpart_as_display_name(dagma_server, make_client) -> None:
    alice = make_client()
    localpart = alice.user_id[1:].split(":")[0]
    c = MatrixClient(dagma_server.base_url)
    assert c.get(f"/profile/{q(alice.user_id)}", auth=False, spec="/profile/{userId}").json == {
        "displayname": localpart
    }
    got = c.get(f"/profile/{q(alice.user_id)}/displayname", auth=False, spec="/profile/{userId}/{keyName}")
    assert got.json == {"displayname": localpart}
    # No avatar yet: an empty object.
    assert c.get(f"/profile/{q(alice.user_id)}/avatar_url", auth=False).json == {}


def test_set_display_name_and_avatar(dagma_server, make_client) -> None:
    alice = make_client()
    me = q(alice.user_id)
    alice.put(
        f"/profile/{me}/displayname", {"displayname": "Alice Liddell"}, spec="/profile/{userId}/{keyName}"
    )
    alice.put(
        f"/profile/{me}/avatar_url",
        {"avatar_url": "mxc://localhost/abcDEF123"},
        spec="/profile/{userId}/{keyName}",
    )
    profile = make_client().get(f"/profile/{me}", spec="/profile/{userId}").json
    assert profile == {"displayname": "Alice Liddell", "avatar_url": "mxc://localhost/abcDEF123"}
    # Empty or deleted clears the field.
    alice.put(f"/profile/{me}/avatar_url", {"avatar_url": ""})
    alice.delete(f"/profile/{me}/displayname", spec="/profile/{userId}/{keyName}")
    assert alice.get(f"/profile/{me}").json == {}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("displayname", "x" * 257),
        ("displayname", 42),
        ("avatar_url", "https://example.org/cat.png"),
        ("avatar_url", "mxc://localhost/"),
        ("avatar_url", "mxc://not a server/abc"),
    ],
    ids=["name-too-long", "name-not-string", "avatar-http", "avatar-no-media-id", "avatar-bad-server"],
)
def test_invalid_profile_values_are_refused_and_change_nothing(make_client, key: str, value: Any) -> None:
    alice = make_client()
    me = q(alice.user_id)
    before = alice.get(f"/profile/{me}").json
    r = alice.put(f"/profile/{me}/{key}", {key: value}, expect=400, spec="/profile/{userId}/{keyName}")
    assert r.json["errcode"] == "M_INVALID_PARAM"
    assert alice.get(f"/profile/{me}").json == before
    # The longest allowed display name is fine.
    alice.put(f"/profile/{me}/displayname", {"displayname": "y" * 256})


def test_profile_changes_only_for_yourself_and_known_fields(dagma_server, make_client) -> None:
    alice, bob = make_client(), make_client()
    r = alice.put(
        f"/profile/{q(bob.user_id)}/displayname",
        {"displayname": "pwned"},
        expect=403,
        spec="/profile/{userId}/{keyName}",
    )
    assert r.json["errcode"] == "M_FORBIDDEN"
    r = alice.delete(f"/profile/{q(bob.user_id)}/displayname", expect=403)
    assert r.json["errcode"] == "M_FORBIDDEN"
    assert "pwned" not in str(bob.get(f"/profile/{q(bob.user_id)}").json)
    me = q(alice.user_id)
    r = alice.put(f"/profile/{me}/displayname", {"avatar_url": "mxc://localhost/x"}, expect=400)
    assert r.json["errcode"] == "M_MISSING_PARAM"
    r = alice.put(f"/profile/{me}/org.example.custom", {"org.example.custom": 1}, expect=403)
    assert r.json["errcode"] == "M_FORBIDDEN"
    r = alice.put(f"/profile/{me}/Not-A-Key", {"Not-A-Key": 1}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    anonymous = MatrixClient(dagma_server.base_url)
    r = anonymous.put(f"/profile/{me}/displayname", {"displayname": "x"}, auth=False, expect=401)
    assert r.json["errcode"] == "M_MISSING_TOKEN"


def test_unknown_users_have_no_profile_and_unreachable_servers_are_named(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    user_id = "@nobody" + secrets.token_hex(3) + ":localhost"
    r = c.get(f"/profile/{q(user_id)}", auth=False, expect=404, spec="/profile/{userId}")
    assert r.json["errcode"] == "M_NOT_FOUND"
    assert (
        c.get(f"/profile/{q(user_id)}/displayname", auth=False, expect=404).json["errcode"] == "M_NOT_FOUND"
    )
    # Remote users' profiles are asked of their server (tests/federation/test_queries.py):
    # one that cannot be reached is a 502 naming it, as Synapse answers.
    remote = "@alice:elsewhere.example"
    r = c.get(f"/profile/{q(remote)}", auth=False, expect=502)
    assert r.json["errcode"] == "M_UNKNOWN" and "elsewhere.example" in r.json["error"]


def test_profile_change_updates_the_member_event_in_every_joined_room(make_client) -> None:
    alice, bob = make_client(), make_client()
    rooms = [alice.create_room(preset="public_chat") for _ in range(2)]
    for room_id in rooms:
        bob.join(room_id)
    bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bobby Tables"})
    bob.put(f"/profile/{q(bob.user_id)}/avatar_url", {"avatar_url": "mxc://localhost/bobby"})
    for room_id in rooms:
        member = _member(alice, room_id, str(bob.user_id))
        assert member == {
            "membership": "join",
            "displayname": "Bobby Tables",
            "avatar_url": "mxc://localhost/bobby",
        }
    # A room the user has left keeps the old profile.
    bob.post(f"/rooms/{q(rooms[0])}/leave", {})
    bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Robert"})
    assert _member(alice, rooms[0], str(bob.user_id))["membership"] == "leave"
    assert _member(alice, rooms[1], str(bob.user_id))["displayname"] == "Robert"


def test_deactivation_leaves_every_room(dagma_server, make_client) -> None:
    alice, bob = make_client(), make_client()
    rooms = [alice.create_room(preset="public_chat") for _ in range(2)]
    for room_id in rooms:
        bob.join(room_id)
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob.user_id},
            "password": "correct horse battery"}  # fmt: skip
    bob.post("/account/deactivate", {"auth": auth})
    for room_id in rooms:
        assert _member(alice, room_id, str(bob.user_id))["membership"] == "leave"
    # The room carries on for the others.
    alice.send(rooms[0], "still here")


# --------------------------------------------------------------------------- user directory


def _search(client: MatrixClient, term: str, limit: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"search_term": term}
    if limit is not None:
        body["limit"] = limit
    result: dict[str, Any] = client.post("/user_directory/search", body, spec="/user_directory/search").json
    return result


def _ids(result: dict[str, Any]) -> list[str]:
    return [r["user_id"] for r in result["results"]]


def test_directory_finds_users_sharing_a_room_by_id_or_display_name(make_client) -> None:
    tag = secrets.token_hex(3)
    alice, bob, carol = make_client(f"alice{tag}"), make_client(f"bob{tag}"), make_client(f"carol{tag}")
    bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": f"Robert Zebra{tag}"})
    room = alice.create_room(preset="private_chat", invite=[bob.user_id])
    bob.join(room)
    # By user ID and by display name, case-insensitively.
    assert _ids(_search(alice, f"BOB{tag}")) == [bob.user_id]
    found = _search(alice, f"zebra{tag}".upper())
    assert found["results"] == [{"user_id": bob.user_id, "display_name": f"Robert Zebra{tag}"}]
    assert found["limited"] is False
    # Carol shares no room with Bob, and the room is not public: she cannot find him.
    assert _search(carol, f"bob{tag}")["results"] == []


def test_directory_finds_members_of_public_rooms(make_client) -> None:
    tag = secrets.token_hex(3)
    alice, dave, erin = make_client(f"alice{tag}"), make_client(f"dave{tag}"), make_client(f"erin{tag}")
    public = alice.create_room(preset="public_chat")
    dave.join(public)
    # Erin is in no room with Dave, but Dave is in a public room.
    assert _ids(_search(erin, f"dave{tag}")) == [dave.user_id]


def test_directory_limit_sets_limited(make_client) -> None:
    tag = secrets.token_hex(3)
    alice = make_client(f"zed{tag}a")
    room = alice.create_room(preset="public_chat")
    for suffix in "bcd":
        make_client(f"zed{tag}{suffix}").join(room)
    result = _search(alice, f"zed{tag}", limit=2)
    assert len(result["results"]) == 2 and result["limited"] is True
    everyone = _search(alice, f"zed{tag}")
    assert len(everyone["results"]) == 4 and everyone["limited"] is False
    assert _ids(everyone) == sorted(_ids(everyone))


def test_directory_search_validates_its_body(make_client) -> None:
    alice = make_client()
    r = alice.post("/user_directory/search", {}, expect=400)
    assert r.json["errcode"] == "M_MISSING_PARAM"
    r = alice.post("/user_directory/search", {"search_term": "x", "limit": "ten"}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"


@pytest.fixture(scope="module")
def search_all_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        tmp_path_factory.mktemp("dir"), config={"user_directory": {"search_all_users": True}}
    ).start()
    yield server
    server.destroy()


def test_search_all_users_finds_local_users_in_no_room(search_all_server) -> None:
    tag = secrets.token_hex(3)
    alice = MatrixClient(search_all_server.base_url).register(f"alice{tag}")
    loner = MatrixClient(search_all_server.base_url).register(f"loner{tag}")
    assert _ids(_search(alice, f"loner{tag}")) == [loner.user_id]


@pytest.mark.django_db
def test_directory_search_is_a_fixed_number_of_queries(django_assert_max_num_queries) -> None:
    from dagcore.actions.accounts import do_register_user
    from dagcore.actions.create_room import RoomSpec, create_room
    from dagcore.actions.membership import check_join_room
    from dagcore.actions.user_directory import search_user_directory

    users = [do_register_user(localpart=f"quiz{i}", password="pw") for i in range(8)]
    room_id, _ = create_room(RoomSpec(creator=users[0].user_id, room_version="12", preset="public_chat"))
    for user in users[1:]:
        check_join_room(user=user, room_id_or_alias=room_id)
    with django_assert_max_num_queries(2):
        results, limited = search_user_directory(searcher=users[0].user_id, term="QUIZ", limit=5)
    assert [e.user_id for e in results] == sorted(u.user_id for u in users)[:5]
    assert limited is True

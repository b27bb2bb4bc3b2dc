"""Queries across servers, one server's side: profiles, the public room directory and space
hierarchies we serve to other servers, and Tribune's use of other servers' answers
(the network faked where we call out).

Spec: server-server API "Querying for information" (query/profile), "Public Room
Directory" and "Spaces" (https://spec.matrix.org/v1.19/server-server-api/).
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from django.conf import settings

from dagcore.actions import directory as directory_actions
from dagcore.actions import hierarchy as hierarchy_actions
from dagcore.actions import profile as profile_actions
from dagcore.actions.persist_event import persist_received_event
from dagcore.federation import queries
from dagcore.federation.client import FederationBadResponse, FederationHttpError, FederationUnreachable
from dagcore.http.errors import MatrixError
from dagcore.models import RemoteProfileCache, User
from dagcore.store import accounts as account_store
from dagma_project.config import build_config
from tests.actions.roomkit import dagma_with, make_room, make_user, set_state
from tests.federation.inbound_support import signed_request, trust
from tests.support.events import RemoteServer
from tests.support.rooms import remote_event

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db]

SERVER = settings.SERVER_NAME
BOB = "@bob:remote.test"


@pytest.fixture
def remote() -> RemoteServer:
    server = RemoteServer("remote.test")
    trust(server)
    return server


@pytest.fixture
def alice() -> User:
    user = make_user("alice")
    account_store.set_profile(
        user, fields=("displayname", "avatar_url"), displayname="Alice", avatar_url="mxc://x.test/a"
    )
    return user


class FakeClient:
    """Stands for the federation client: answers (or raises) per path, records every call."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.calls: list[tuple[str, str, str, Any]] = []

    def _answer(self, method: str, destination: str, path: str, payload: Any) -> dict[str, Any]:
        self.calls.append((method, destination, path, payload))
        answer = self.answers[path]
        if isinstance(answer, Exception):
            raise answer
        if not isinstance(answer, dict):
            raise FederationBadResponse(destination, "answer is not a JSON object")
        return answer

    def get_json(self, destination: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._answer("GET", destination, path, kwargs.get("query"))

    def post_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> dict[str, Any]:
        return self._answer("POST", destination, path, content)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    client = FakeClient()
    monkeypatch.setattr(queries, "get_federation_client", lambda: client)
    return client


# --------------------------------------------------------------------------- profiles


def test_query_profile_answers_our_users_profile_and_one_field(remote, alice) -> None:
    path = f"/_matrix/federation/v1/query/profile?user_id={alice.user_id}"
    assert signed_request(remote, "GET", path) == (
        200,
        {"displayname": "Alice", "avatar_url": "mxc://x.test/a"},
    )
    assert signed_request(remote, "GET", path + "&field=displayname") == (200, {"displayname": "Alice"})


@pytest.mark.parametrize(
    ("query", "status", "errcode"),
    [
        ("", 400, "M_MISSING_PARAM"),
        (f"user_id={BOB}", 400, "M_INVALID_PARAM"),
        ("user_id=not-a-user", 400, "M_INVALID_PARAM"),
        (f"user_id=@nobody:{SERVER}", 404, "M_NOT_FOUND"),
        (f"user_id=@alice:{SERVER}&field=m.tz", 404, "M_NOT_FOUND"),
    ],
)
def test_query_profile_refuses_bad_questions(remote, alice, query: str, status: int, errcode: str) -> None:
    got, answer = signed_request(remote, "GET", f"/_matrix/federation/v1/query/profile?{query}")
    assert (got, answer["errcode"]) == (status, errcode)


def test_query_profile_is_refused_when_the_operator_turns_lookups_off(remote, alice, settings) -> None:
    path = f"/_matrix/federation/v1/query/profile?user_id={alice.user_id}"
    settings.DAGMA = dagma_with(allow_profile_lookup_over_federation=False)
    for query in ("", "&field=displayname"):
        status, answer = signed_request(remote, "GET", path + query)
        assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")
        assert "Alice" not in str(answer)
    # The default (as in Synapse) is on.
    assert build_config({"server_name": "example.com"}, env={}).allow_profile_lookup_over_federation
    settings.DAGMA = dagma_with(allow_profile_lookup_over_federation=True)
    assert signed_request(remote, "GET", path)[0] == 200


def test_query_profile_needs_a_signed_request_and_hides_deactivated_users(remote, alice) -> None:
    path = f"/_matrix/federation/v1/query/profile?user_id={alice.user_id}"
    assert signed_request(remote, "GET", path, sign=False)[0] == 401
    User.objects.filter(pk=alice.pk).update(deactivated=True)
    assert signed_request(remote, "GET", path)[0] == 404


def test_a_remote_profile_is_asked_once_then_served_from_the_cache(network) -> None:
    network.answers["/_matrix/federation/v1/query/profile"] = {
        "displayname": "Bob",
        "avatar_url": "mxc://remote.test/bobpic",
        "m.tz": "Europe/Paris",
    }
    expected = {"displayname": "Bob", "avatar_url": "mxc://remote.test/bobpic"}
    assert profile_actions.get_any_profile(user_id=BOB) == expected
    assert profile_actions.get_any_profile(user_id=BOB) == expected
    assert [(c[1], c[3]) for c in network.calls] == [("remote.test", {"user_id": BOB})]
    # Past its few minutes it is asked again (and the beat job drops the stale row).
    RemoteProfileCache.objects.update(fetched_ts=1)
    assert profile_actions.do_purge_remote_profiles() == 1
    network.answers["/_matrix/federation/v1/query/profile"] = {"displayname": "Robert"}
    assert profile_actions.get_any_profile(user_id=BOB) == {"displayname": "Robert"}
    assert len(network.calls) == 2


def test_remote_profile_values_of_the_wrong_shape_are_dropped(network) -> None:
    network.answers["/_matrix/federation/v1/query/profile"] = {
        "displayname": 5,
        "avatar_url": "https://evil/x",
    }
    assert profile_actions.get_any_profile(user_id=BOB) == {}


@pytest.mark.parametrize(
    ("failure", "status", "errcode"),
    [
        (FederationHttpError("remote.test", 404, {"errcode": "M_NOT_FOUND"}), 404, "M_NOT_FOUND"),
        (FederationHttpError("remote.test", 403, {"errcode": "M_FORBIDDEN"}), 403, "M_FORBIDDEN"),
        (FederationUnreachable("remote.test", "connection refused"), 502, "M_UNKNOWN"),
        (["not", "an", "object"], 502, "M_UNKNOWN"),
    ],
)
def test_remote_profile_failures_name_the_server_and_cache_nothing(
    network, failure: Any, status: int, errcode: str
) -> None:
    network.answers["/_matrix/federation/v1/query/profile"] = failure
    with pytest.raises(MatrixError) as exc:
        profile_actions.get_any_profile(user_id=BOB)
    assert (exc.value.status, exc.value.errcode) == (status, errcode)
    assert "remote.test" in exc.value.error
    assert not RemoteProfileCache.objects.exists()


# --------------------------------------------------------------------------- public rooms


def _published_room(creator: User, name: str) -> str:
    room_id = make_room(creator, preset="public_chat", name=name, visibility="public")
    return room_id


def test_public_rooms_over_federation_are_refused_unless_the_operator_allows_them(
    remote, alice, settings
) -> None:
    _published_room(alice, "Lobby")
    status, answer = signed_request(remote, "GET", "/_matrix/federation/v1/publicRooms")
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")
    settings.DAGMA = dagma_with(allow_public_rooms_over_federation=True)
    status, answer = signed_request(remote, "GET", "/_matrix/federation/v1/publicRooms")
    assert status == 200 and [c["name"] for c in answer["chunk"]] == ["Lobby"]


def test_public_rooms_over_federation_filter_and_page(remote, alice, settings) -> None:
    settings.DAGMA = dagma_with(allow_public_rooms_over_federation=True)
    for name in ("Cats", "Dogs", "Cats and dogs"):
        _published_room(alice, name)
    status, answer = signed_request(
        remote, "POST", "/_matrix/federation/v1/publicRooms", {"filter": {"generic_search_term": "cats"}}
    )
    assert status == 200 and sorted(c["name"] for c in answer["chunk"]) == ["Cats", "Cats and dogs"]
    status, first = signed_request(remote, "GET", "/_matrix/federation/v1/publicRooms?limit=2")
    assert status == 200 and len(first["chunk"]) == 2 and first["total_room_count_estimate"] == 3
    status, rest = signed_request(
        remote, "GET", f"/_matrix/federation/v1/publicRooms?since={first['next_batch']}"
    )
    assert status == 200 and len(rest["chunk"]) == 1
    ids = {c["room_id"] for c in first["chunk"] + rest["chunk"]}
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/_matrix/federation/v1/publicRooms?limit=lots", None),
        ("GET", "/_matrix/federation/v1/publicRooms?since=garbage", None),
        ("POST", "/_matrix/federation/v1/publicRooms", {"limit": -1}),
        ("POST", "/_matrix/federation/v1/publicRooms", {"filter": "cats"}),
        ("POST", "/_matrix/federation/v1/publicRooms", {"filter": {"room_types": "m.space"}}),
        ("POST", "/_matrix/federation/v1/publicRooms", [1, 2]),
    ],
)
def test_bad_public_rooms_requests_are_400(remote, settings, method: str, path: str, body: Any) -> None:
    settings.DAGMA = dagma_with(allow_public_rooms_over_federation=True)
    status, answer = signed_request(remote, method, path, body)
    assert status == 400 and answer["errcode"] in ("M_INVALID_PARAM", "M_NOT_JSON", "M_BAD_JSON")


def test_another_servers_directory_is_asked_with_get_or_post(network) -> None:
    page = {"chunk": [{"room_id": "!a:remote.test", "name": "A", "num_joined_members": 3}, "junk"],
            "next_batch": "n1", "total_room_count_estimate": 7}  # fmt: skip
    network.answers["/_matrix/federation/v1/publicRooms"] = page
    got = directory_actions.get_remote_public_rooms(
        server_name="remote.test", query=directory_actions.PublicRoomsQuery(limit=5), post=False
    )
    assert (
        [c["room_id"] for c in got.chunk] == ["!a:remote.test"] and got.next_batch == "n1" and got.total == 7
    )
    query = directory_actions.PublicRoomsQuery(limit=5, since="n1", search_term="a", room_types=[None])
    directory_actions.get_remote_public_rooms(server_name="remote.test", query=query, post=True)
    assert network.calls == [
        ("GET", "remote.test", "/_matrix/federation/v1/publicRooms", {"limit": "5"}),
        ("POST", "remote.test", "/_matrix/federation/v1/publicRooms",
         {"limit": 5, "since": "n1", "filter": {"generic_search_term": "a", "room_types": [None]}}),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (["a", "list"], 502),
        ({"chunk": "no"}, 502),
        (FederationHttpError("remote.test", 403, {"errcode": "M_FORBIDDEN"}), 403),
        (FederationUnreachable("remote.test", "timed out"), 502),
    ],
)
def test_bad_remote_directories_fail_naming_the_server(network, answer: Any, status: int) -> None:
    network.answers["/_matrix/federation/v1/publicRooms"] = answer
    with pytest.raises(MatrixError) as exc:
        directory_actions.get_remote_public_rooms(
            server_name="remote.test", query=directory_actions.PublicRoomsQuery(), post=False
        )
    assert exc.value.status == status and "remote.test" in exc.value.error


# --------------------------------------------------------------------------- hierarchy


def _space(alice: User, *children: str, via: str = SERVER) -> str:
    space = make_room(alice, preset="public_chat", name="Space", creation_content={"type": "m.space"})
    for child in children:
        set_state(alice, space, "m.space.child", {"via": [via]}, state_key=child)
    return space


def test_hierarchy_over_federation_lists_accessible_children_and_names_the_rest(remote, alice) -> None:
    public = make_room(alice, preset="public_chat", name="Public child")
    private = make_room(alice, preset="private_chat", name="Private child")
    unknown = f"!{secrets.token_hex(6)}:elsewhere.test"
    space = _space(alice, public, private, unknown)
    status, answer = signed_request(remote, "GET", f"/_matrix/federation/v1/hierarchy/{space}")
    assert status == 200
    assert answer["room"]["room_id"] == space and answer["room"]["room_type"] == "m.space"
    assert {e["state_key"] for e in answer["room"]["children_state"]} == {public, private, unknown}
    assert [c["room_id"] for c in answer["children"]] == [public]
    assert answer["inaccessible_children"] == [private]


def test_hierarchy_over_federation_shows_a_private_room_to_a_server_in_it(remote, alice) -> None:
    private = make_room(alice, preset="private_chat", name="Private child")
    space = _space(alice, private)
    status, answer = signed_request(remote, "GET", f"/_matrix/federation/v1/hierarchy/{space}")
    assert status == 200 and answer["inaccessible_children"] == [private]
    # Bob of remote.test joins (the room is opened for his join, then closed again).
    set_state(alice, private, "m.room.join_rules", {"join_rule": "public"})
    persist_received_event(
        remote_event(remote, private, BOB, "m.room.member", {"membership": "join"}, state_key=BOB)
    )
    set_state(alice, private, "m.room.join_rules", {"join_rule": "invite"})
    status, answer = signed_request(remote, "GET", f"/_matrix/federation/v1/hierarchy/{space}")
    assert status == 200 and [c["room_id"] for c in answer["children"]] == [private]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/_matrix/federation/v1/hierarchy/not-a-room", 400),
        ("/_matrix/federation/v1/hierarchy/!unknown:nowhere.test", 404),
        ("/_matrix/federation/v1/hierarchy/{private}", 404),
        ("/_matrix/federation/v1/hierarchy/{space}?suggested_only=maybe", 400),
    ],
)
def test_bad_hierarchy_requests(remote, alice, path: str, status: int) -> None:
    private = make_room(alice, preset="private_chat")
    space = _space(alice)
    got, _ = signed_request(remote, "GET", path.format(private=private, space=space))
    assert got == status


def test_tribune_asks_a_via_server_about_a_child_room_we_are_not_in(network, alice) -> None:
    far = "!far:remote.test"
    grandchild = "!grand:remote.test"
    secret = "!secret:remote.test"
    space = _space(alice, far, secret, via="remote.test")
    network.answers[f"/_matrix/federation/v1/hierarchy/{far.replace('!', '%21').replace(':', '%3A')}"] = {
        "room": {
            "room_id": far, "name": "Far room", "num_joined_members": 4, "join_rule": "public",
            "world_readable": False, "guest_can_join": False,
            "children_state": [{"type": "m.space.child", "state_key": grandchild, "content": {"via": ["remote.test"]},
                                "sender": BOB, "origin_server_ts": 1}],
        },
        "children": [{"room_id": grandchild, "name": "Grandchild", "num_joined_members": 1, "join_rule": "public",
                      "world_readable": False, "guest_can_join": False, "children_state": []}],
        "inaccessible_children": [],
    }  # fmt: skip
    network.answers[f"/_matrix/federation/v1/hierarchy/{secret.replace('!', '%21').replace(':', '%3A')}"] = {
        "room": {"room_id": secret, "name": "Secret", "join_rule": "invite", "num_joined_members": 1,
                 "world_readable": False, "guest_can_join": False, "children_state": []},
        "children": [], "inaccessible_children": [],
    }  # fmt: skip
    network.answers[
        f"/_matrix/federation/v1/hierarchy/{grandchild.replace('!', '%21').replace(':', '%3A')}"
    ] = FederationUnreachable("remote.test", "down")
    page = hierarchy_actions.get_space_hierarchy(
        user_id=alice.user_id,
        room_id=space,
        suggested_only=False,
        limit=None,
        max_depth=None,
        from_token=None,
    )
    names = [r.get("name") for r in page.rooms]
    # The far room (public) and, from the summary its answer carried, the grandchild; the
    # invite-only room is not shown to a user who is not in it.
    assert names == ["Space", "Far room", "Grandchild"]
    assert page.rooms[1]["children_state"][0]["state_key"] == grandchild
    assert all(c[1] == "remote.test" for c in network.calls)


def test_a_broken_via_server_leaves_the_child_out_and_the_rest_served(network, alice) -> None:
    far = "!far:remote.test"
    space = _space(alice, far, via="remote.test")
    network.answers[f"/_matrix/federation/v1/hierarchy/{far.replace('!', '%21').replace(':', '%3A')}"] = {
        "room": {"room_id": "!other:remote.test"}, "children": [], "inaccessible_children": []
    }  # fmt: skip
    page = hierarchy_actions.get_space_hierarchy(
        user_id=alice.user_id,
        room_id=space,
        suggested_only=False,
        limit=None,
        max_depth=None,
        from_token=None,
    )
    assert [r["room_id"] for r in page.rooms] == [space]

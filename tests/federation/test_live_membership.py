"""Two Dagma processes over TLS: joins (by alias and by room ID), invites both ways, invite
rejection, leave and knock, for room versions 10, 11 and 12.

Both servers are named ``localhost:<federation port>`` and trust a test CA (set up as in
``test_live_federation.py``). What each server holds is read through its own client API.
Events sent after a join reach the other server through the federation outbox, which is
not part of this branch: these tests assert what the handshakes themselves carry.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    root = tmp_path_factory.mktemp("fedjoin")
    ca = TestCA(root / "ca")
    config = {"federation_custom_ca_list": [str(ca.cert_path)], "ip_range_whitelist": LOOPBACK}
    made: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            cert = ca.issue("localhost", "127.0.0.1", stem=name)
            server = LiveServer(root / name, federation_tls=(cert.cert_path, cert.key_path), config=config)
            made.append(server)
            server.start()
        yield made[0], made[1]
    finally:
        for server in made:
            server.destroy()


@pytest.fixture
def user(servers) -> Iterator[Any]:
    made: list[MatrixClient] = []

    def factory(server: LiveServer) -> MatrixClient:
        client = MatrixClient(server.base_url, timeout=120).register()
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


def _members(client: MatrixClient, room_id: str) -> dict[str, str]:
    """user -> membership, as the client's own server holds the room."""
    chunk = client.get(f"/rooms/{q(room_id)}/members").json["chunk"]
    return {e["state_key"]: e["content"]["membership"] for e in chunk}


@pytest.mark.parametrize("version", ["10", "11", "12"])
@pytest.mark.parametrize("by", ["alias", "room id and server_name"])
def test_a_user_of_b_joins_a_public_room_of_a(servers, user, version, by) -> None:
    a, b = servers
    alice, bob = user(a), user(b)
    name = f"pub{secrets.token_hex(3)}"
    room_id = alice.create_room(preset="public_chat", room_version=version, room_alias_name=name, name="Hall")
    if by == "alias":
        joined = bob.post(f"/join/{q(f'#{name}:{a.server_name}')}", spec="/join/{roomIdOrAlias}").json
    else:
        joined = bob.post(f"/join/{q(room_id)}", params={"server_name": a.server_name}).json
    assert joined == {"room_id": room_id}
    # Both servers hold both memberships in the room's state.
    assert _members(bob, room_id) == {alice.user_id: "join", bob.user_id: "join"}
    assert _members(alice, room_id) == {alice.user_id: "join", bob.user_id: "join"}
    # The room and its state reach B's user through /sync.
    synced = bob.sync()["rooms"]["join"][room_id]
    state = synced["state"]["events"] + synced["timeline"]["events"]
    assert {"type": "m.room.name", "content": {"name": "Hall"}}.items() <= next(
        e for e in state if e["type"] == "m.room.name"
    ).items()
    assert bob.get(f"/rooms/{q(room_id)}/state/m.room.create/").json["room_version"] == version
    # Joining again is answered by B alone: it is in the room now.
    assert bob.post(f"/rooms/{q(room_id)}/join").json == {"room_id": room_id}


def test_an_invite_from_a_reaches_bs_user_who_accepts_it(servers, user) -> None:
    a, b = servers
    alice, bob = user(a), user(b)
    room_id = alice.create_room(preset="private_chat", room_version="12", name="Secret")
    alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}, spec="/rooms/{roomId}/invite")
    assert _members(alice, room_id)[bob.user_id] == "invite"
    invited = bob.sync()["rooms"]["invite"][room_id]["invite_state"]["events"]
    assert {"type": "m.room.name", "content": {"name": "Secret"}}.items() <= next(
        e for e in invited if e["type"] == "m.room.name"
    ).items()
    # No server named: the inviter's server is asked.
    assert bob.post(f"/rooms/{q(room_id)}/join").json == {"room_id": room_id}
    assert _members(alice, room_id)[bob.user_id] == "join"
    assert _members(bob, room_id) == {alice.user_id: "join", bob.user_id: "join"}


def test_an_invite_from_b_reaches_as_user_who_accepts_it(servers, user) -> None:
    a, b = servers
    alice, bob = user(a), user(b)
    room_id = bob.create_room(preset="private_chat", room_version="11")
    bob.post(f"/rooms/{q(room_id)}/invite", {"user_id": alice.user_id})
    assert room_id in alice.sync()["rooms"]["invite"]
    alice.join(room_id)
    assert _members(bob, room_id) == {alice.user_id: "join", bob.user_id: "join"}


def test_bs_user_rejects_an_invite_and_a_sees_the_leave(servers, user) -> None:
    a, b = servers
    alice, bob = user(a), user(b)
    room_id = alice.create_room(preset="private_chat", room_version="10")
    alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    since = bob.sync()["next_batch"]
    bob.post(f"/rooms/{q(room_id)}/leave", spec="/rooms/{roomId}/leave")
    assert _members(alice, room_id)[bob.user_id] == "leave"
    assert room_id in bob.sync(since=since)["rooms"]["leave"]


def test_bs_user_leaves_a_joined_room(servers, user) -> None:
    a, b = servers
    alice, bob = user(a), user(b)
    room_id = alice.create_room(preset="public_chat", room_version="12")
    bob.post(f"/join/{q(room_id)}", params={"via": a.server_name})
    bob.post(f"/rooms/{q(room_id)}/leave")
    assert bob.get("/joined_rooms").json["joined_rooms"] == []
    assert _members(bob, room_id)[bob.user_id] == "leave"


def test_bs_user_knocks_on_a_knock_room_of_a(servers, user) -> None:
    a, b = servers
    alice, bob = user(a), user(b)
    room_id = alice.create_room(preset="private_chat", room_version="10", name="Door")
    alice.put(f"/rooms/{q(room_id)}/state/m.room.join_rules/", {"join_rule": "knock"})
    answer = bob.post(f"/knock/{q(room_id)}", {"reason": "let me in"}, params={"via": a.server_name})
    assert answer.json == {"room_id": room_id}
    assert _members(alice, room_id)[bob.user_id] == "knock"
    knocked = bob.sync()["rooms"]["knock"][room_id]["knock_state"]["events"]
    assert any(e["type"] == "m.room.join_rules" and e["content"]["join_rule"] == "knock" for e in knocked)
    # Alice lets Bob in with an invite; he joins through her server.
    alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    bob.post(f"/join/{q(room_id)}", params={"via": a.server_name})
    assert _members(alice, room_id)[bob.user_id] == "join"


def test_a_refused_or_unknown_room_fails_the_join_naming_the_server_and_stores_nothing(servers, user) -> None:
    a, b = servers
    alice, bob = user(a), user(b)
    private = alice.create_room(preset="private_chat", room_version="12")
    refused = bob.post(f"/join/{q(private)}", params={"via": a.server_name}, expect=403).json
    assert refused["errcode"] == "M_FORBIDDEN" and a.server_name in refused["error"]
    unknown = bob.post(f"/join/{q(f'!nothing:{a.server_name}')}", expect=404).json
    assert unknown["errcode"] == "M_NOT_FOUND" and a.server_name in unknown["error"]
    assert bob.get("/joined_rooms").json["joined_rooms"] == []
    assert b.query("SELECT count(*) FROM rooms WHERE room_id = %s", (private,)) == [(0,)]


def test_a_client_that_gives_up_does_not_abort_the_join_and_its_retry_attaches(servers, user) -> None:
    a, b = servers
    alice, bob = user(a), user(b)
    room_id = alice.create_room(preset="public_chat", room_version="12")
    path = f"/_matrix/client/v3/join/{q(room_id)}"
    headers = {"Authorization": f"Bearer {bob.access_token}"}
    with pytest.raises(httpx.TimeoutException):
        # The client hangs up long before the handshake with A can be done.
        httpx.post(b.base_url + path, params={"via": a.server_name}, json={}, headers=headers, timeout=0.01)
    # The retry is answered when the join that kept running is done (or runs its own if it was).
    assert bob.post(f"/join/{q(room_id)}", params={"via": a.server_name}).json == {"room_id": room_id}
    assert _members(alice, room_id)[bob.user_id] == "join"
    joins = a.query(
        "SELECT count(*) FROM events WHERE type = 'm.room.member' AND state_key = %s", (bob.user_id,)
    )
    assert joins == [(1,)]  # one handshake, not two


def test_a_restricted_join_is_signed_off_by_a_and_a_knock_can_be_retracted(servers, user) -> None:
    a, b = servers
    alice, bob, carol = user(a), user(b), user(b)
    space = alice.create_room(preset="public_chat", room_version="11")
    room_id = alice.create_room(
        preset="private_chat",
        room_version="11",
        initial_state=[
            {
                "type": "m.room.join_rules",
                "state_key": "",
                "content": {
                    "join_rule": "knock_restricted",
                    "allow": [{"type": "m.room_membership", "room_id": space}],
                },
            }
        ],
    )
    # knock_restricted also takes knocks (while B is not in the room, through A: after that B's
    # own events reach A through the outbox). Carol knocks, then thinks better of it.
    carol.post(f"/knock/{q(room_id)}", params={"via": a.server_name})
    assert _members(alice, room_id)[carol.user_id] == "knock"
    carol.post(f"/rooms/{q(room_id)}/leave")
    assert _members(alice, room_id)[carol.user_id] == "leave"
    # Not in the space yet: refused by A, which names itself.
    refused = bob.post(f"/join/{q(room_id)}", params={"via": a.server_name}, expect=403).json
    assert a.server_name in refused["error"]
    bob.post(f"/join/{q(space)}", params={"via": a.server_name})
    assert bob.post(f"/join/{q(room_id)}", params={"via": a.server_name}).json == {"room_id": room_id}
    member = bob.get(f"/rooms/{q(room_id)}/state/m.room.member/{q(bob.user_id)}").json
    assert member["join_authorised_via_users_server"] == alice.user_id
    assert _members(alice, room_id)[bob.user_id] == "join"


def test_a_direct_chat_created_on_a_invites_bs_user(servers, user) -> None:
    a, b = servers
    alice, bob = user(a), user(b)
    room_id = alice.create_room(preset="trusted_private_chat", is_direct=True, invite=[bob.user_id])
    invite_state = bob.sync()["rooms"]["invite"][room_id]["invite_state"]["events"]
    own = next(e for e in invite_state if e["type"] == "m.room.member" and e["state_key"] == bob.user_id)
    assert own["content"] == {"membership": "invite", "is_direct": True}
    bob.join(room_id)
    assert _members(alice, room_id) == {alice.user_id: "join", bob.user_id: "join"}

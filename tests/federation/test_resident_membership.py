"""The resident side of joins, leaves, knocks and invites, driven through Embassy's URLconf
by a fake signed remote server (spec: server-server API "Joining Rooms", "Knocking upon a
room", "Leaving Rooms", "Inviting to a room")."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.test import RequestFactory
from django.urls import resolve
from django.utils.encoding import escape_uri_path

from dagcore.actions import resident_membership
from dagcore.clock import now_ms
from dagcore.federation.keyring import Keyring
from dagcore.models import User
from dagcore.protocol import signing
from dagcore.protocol.auth_rules import auth_types_for_event
from dagcore.protocol.events import Event
from dagcore.protocol.hashing import add_content_hash, compute_event_id, compute_room_id_v12
from dagcore.protocol.request_auth import authorization_header
from dagcore.protocol.room_versions import EventFormat, get_room_version
from dagcore.server_keys import build_server_key_response, get_server_name
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store import sync as sync_store
from dagcore.sync.invites import build_stripped_rooms
from embassy import http as embassy_http
from tests.actions.roomkit import make_room, make_user, set_state
from tests.federation.fakes import Clock, FakeFederation, FakeKeyServer

# Also in the SQLite pass: the quick start federates on SQLite.
pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]

REMOTE = "remote.test:8448"  # with a port, as the live tests name servers


class Remote:
    """A homeserver we federate with: its key is what our keyring finds for it."""

    def __init__(self, name: str = REMOTE) -> None:
        self.name = name
        self.key = signing.generate_signing_key()

    def sign_pdu(self, pdu: dict[str, Any], room_version_id: str) -> tuple[dict[str, Any], str]:
        version = get_room_version(room_version_id)
        if version.event_format is EventFormat.V1 and "event_id" not in pdu:
            pdu = {
                **pdu,
                "event_id": f"${secrets.token_urlsafe(12)}:{self.name}",
            }  # v1/v2: chosen by the origin
        signed = signing.sign_event(
            add_content_hash(pdu), room_version=version, server_name=self.name, signing_key=self.key
        )
        event_id = signed["event_id"] if "event_id" in signed else compute_event_id(signed, version)
        return signed, event_id

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """``path`` decoded, as Django sees it; signed over the URI Django reconstructs."""
        uri = escape_uri_path(path) + ("?" + urlencode(query, doseq=True, quote_via=quote) if query else "")
        header = authorization_header(
            method=method, uri=uri, origin=self.name, destination=get_server_name(), signing_key=self.key,
            content=body,
        )  # fmt: skip
        data = json.dumps(body).encode() if body is not None else b""
        request = RequestFactory().generic(
            method, uri, data, content_type="application/json", HTTP_AUTHORIZATION=header
        )
        match = resolve(path, urlconf="embassy.urls")
        response = match.func(request, **match.kwargs)
        return response.status_code, json.loads(response.content)


@pytest.fixture
def remote(monkeypatch) -> Remote:
    server = Remote()
    net = FakeFederation(Clock())
    net.servers[REMOTE] = FakeKeyServer(REMOTE, [server.key], valid_for_ms=10**13)
    ring = Keyring(
        transport=net,
        our_server_name=get_server_name(),
        our_key_response=lambda now: build_server_key_response(now_ms=now),
    )
    monkeypatch.setattr(embassy_http, "get_keyring", lambda: ring)
    monkeypatch.setattr(resident_membership, "get_keyring", lambda: ring)
    return server


def _membership(room_id: str, user_id: str) -> str | None:
    room = room_store.get_room(room_id)
    assert room is not None
    row = room_store.get_membership(room, user_id)
    return row.membership if row is not None else None


def _make(
    remote: Remote, kind: str, room_id: str, user_id: str, versions: list[str] | None
) -> tuple[int, Any]:
    query = {"ver": versions} if versions is not None else None
    return remote.call("GET", f"/_matrix/federation/v1/make_{kind}/{room_id}/{user_id}", query=query)


def _handshake(
    remote: Remote, kind: str, room_id: str, user_id: str, *, version: str
) -> tuple[int, Any, str]:
    """make_{kind} then send_{kind}: the status and answer of the send, and the event ID."""
    status, made = _make(remote, kind, room_id, user_id, [version] if kind != "leave" else None)
    assert status == 200, made
    template = made["event"]
    template["origin_server_ts"] = now_ms()
    pdu, event_id = remote.sign_pdu(template, made["room_version"])
    send = {"join": "v2/send_join", "leave": "v2/send_leave", "knock": "v1/send_knock"}[kind]
    status, answer = remote.call("PUT", f"/_matrix/federation/{send}/{room_id}/{event_id}", pdu)
    return status, answer, event_id


@pytest.mark.parametrize("version", ["2", "10", "11", "12"])
def test_a_remote_user_joins_a_public_room_and_gets_its_full_state_and_auth_chain(remote, version) -> None:
    creator = make_user()
    room_id = make_room(creator, preset="public_chat", room_version=version)
    user_id = f"@bob:{REMOTE}"
    status, made = _make(remote, "join", room_id, user_id, [version])
    assert status == 200 and made["room_version"] == version
    assert made["event"]["content"] == {"membership": "join"} and made["event"]["sender"] == user_id
    status, answer, event_id = _handshake(remote, "join", room_id, user_id, version=version)
    assert status == 200, answer
    assert answer["members_omitted"] is False and REMOTE in answer["servers_in_room"]
    state_types = {(e["type"], e.get("state_key")) for e in answer["state"]}
    assert ("m.room.create", "") in state_types and ("m.room.member", creator.user_id) in state_types
    assert ("m.room.member", user_id) not in state_types  # the state before the join
    # v12 events do not cite the create event: it is in the state, not in an auth chain.
    chain_types = {e["type"] for e in answer["auth_chain"]}
    assert chain_types >= (
        {"m.room.power_levels"} if version == "12" else {"m.room.create", "m.room.power_levels"}
    )
    assert answer["event"]["content"]["membership"] == "join"
    assert _membership(room_id, user_id) == "join"
    assert event_store.get_event_by_id(event_id) is not None


def test_make_join_for_another_servers_user_is_403(remote) -> None:
    room_id = make_room(make_user(), preset="public_chat", room_version="11")
    status, body = _make(remote, "join", room_id, "@eve:elsewhere.test", ["11"])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


def test_make_join_without_the_rooms_version_in_ver_is_400_incompatible(remote) -> None:
    room_id = make_room(make_user(), preset="public_chat", room_version="11")
    status, body = _make(remote, "join", room_id, f"@bob:{REMOTE}", ["9", "10"])
    assert (status, body["errcode"], body["room_version"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION", "11")


def test_make_join_of_a_room_we_are_not_in_is_404_and_of_an_invite_only_room_403(remote) -> None:
    status, body = _make(remote, "join", f"!nope:{get_server_name()}", f"@bob:{REMOTE}", ["11"])
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    room_id = make_room(make_user(), preset="private_chat", room_version="11")
    status, body = _make(remote, "join", room_id, f"@bob:{REMOTE}", ["11"])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


def _signed_join(remote: Remote, room_id: str, user_id: str, version: str) -> tuple[dict[str, Any], str]:
    status, made = _make(remote, "join", room_id, user_id, [version])
    assert status == 200
    return remote.sign_pdu(made["event"], version)


@pytest.mark.parametrize(
    ("case", "status", "errcode"),
    [
        ("other event id in path", 400, "M_BAD_JSON"),
        ("other room in path", 400, "M_BAD_JSON"),
        ("user of another server", 403, "M_FORBIDDEN"),
        ("forged signature", 403, "M_FORBIDDEN"),
        ("not an object", 400, "M_BAD_JSON"),
    ],
)
def test_a_bad_send_join_is_refused_and_stores_nothing(remote, case, status, errcode) -> None:
    room_id = make_room(make_user(), preset="public_chat", room_version="11")
    other_room = make_room(make_user(), preset="public_chat", room_version="11")
    user_id = f"@bob:{REMOTE}"
    pdu, event_id = _signed_join(remote, room_id, user_id, "11")
    path_room, path_event = room_id, event_id
    body: Any = pdu
    if case == "other event id in path":
        path_event = "$" + "A" * 43
    elif case == "other room in path":
        path_room = other_room
    elif case == "user of another server":
        template = {**pdu, "sender": "@eve:elsewhere.test", "state_key": "@eve:elsewhere.test"}
        template.pop("signatures")
        template.pop("hashes")
        body, path_event = remote.sign_pdu(template, "11")
    elif case == "forged signature":
        template = {k: v for k, v in pdu.items() if k not in ("signatures", "hashes")}
        body, path_event = Remote().sign_pdu(template, "11")  # remote.test's name, another key
    elif case == "not an object":
        body = ["join"]
    got_status, answer = remote.call(
        "PUT", f"/_matrix/federation/v2/send_join/{path_room}/{path_event}", body
    )
    assert (got_status, answer["errcode"]) == (status, errcode), answer
    assert _membership(room_id, user_id) is None and _membership(other_room, user_id) is None
    assert event_store.get_event_by_id(path_event) is None


def test_a_restricted_join_is_authorised_by_a_local_user_and_signed_by_us(remote) -> None:
    creator = make_user()
    space = make_room(creator, preset="public_chat", room_version="10")
    user_id = f"@bob:{REMOTE}"
    assert _handshake(remote, "join", space, user_id, version="10")[0] == 200
    room_id = make_room(creator, preset="private_chat", room_version="10")
    set_state(creator, room_id, "m.room.join_rules",
              {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]})  # fmt: skip
    status, made = _make(remote, "join", room_id, user_id, ["10"])
    assert status == 200
    assert made["event"]["content"]["join_authorised_via_users_server"] == creator.user_id
    status, answer, _ = _handshake(remote, "join", room_id, user_id, version="10")
    assert status == 200, answer
    assert get_server_name() in answer["event"]["signatures"] and REMOTE in answer["event"]["signatures"]
    assert _membership(room_id, user_id) == "join"
    # Someone in none of the allowed rooms is refused at make_join.
    status, body = _make(remote, "join", room_id, f"@carol:{REMOTE}", ["10"])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


def test_a_remote_member_leaves_through_make_leave_and_send_leave(remote) -> None:
    room_id = make_room(make_user(), preset="public_chat", room_version="12")
    user_id = f"@bob:{REMOTE}"
    assert _handshake(remote, "join", room_id, user_id, version="12")[0] == 200
    status, answer, _ = _handshake(remote, "leave", room_id, user_id, version="12")
    assert (status, answer) == (200, {})
    assert _membership(room_id, user_id) == "leave"


def test_a_remote_user_knocks_and_gets_the_stripped_state(remote) -> None:
    creator = make_user()
    room_id = make_room(creator, preset="private_chat", room_version="10", name="Knock here")
    set_state(creator, room_id, "m.room.join_rules", {"join_rule": "knock"})
    user_id = f"@bob:{REMOTE}"
    status, answer, _ = _handshake(remote, "knock", room_id, user_id, version="10")
    assert status == 200, answer
    stripped = {(e["type"], e["state_key"]): e["content"] for e in answer["knock_room_state"]}
    assert stripped[("m.room.join_rules", "")] == {"join_rule": "knock"}
    assert stripped[("m.room.name", "")] == {"name": "Knock here"}
    assert _membership(room_id, user_id) == "knock"
    # A public room takes no knocks: make_knock answers 403.
    public = make_room(creator, preset="public_chat", room_version="10")
    status, body = _make(remote, "knock", public, user_id, ["10"])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


# --------------------------------------------------------------------------- invites


def _remote_room(remote: Remote, version: str) -> tuple[str, dict[str, Any], str]:
    """A room living on the remote server: its ID, create PDU and create event ID."""
    room_version = get_room_version(version)
    creator = f"@alice:{REMOTE}"
    create: dict[str, Any] = {
        "type": "m.room.create", "state_key": "", "sender": creator, "content": {"room_version": version},
        "prev_events": [], "auth_events": [], "depth": 1, "origin_server_ts": now_ms(),
    }  # fmt: skip
    if not room_version.room_id_is_create_event_hash:
        create["room_id"] = f"!remote:{REMOTE}"
    if not room_version.implicit_room_creator:
        create["content"]["creator"] = creator
    pdu, event_id = remote.sign_pdu(create, version)
    room_id = compute_room_id_v12(pdu) if room_version.room_id_is_create_event_hash else create["room_id"]
    return room_id, pdu, event_id


def _invite_body(remote: Remote, version: str, invitee: str) -> tuple[str, str, dict[str, Any]]:
    room_id, create, create_id = _remote_room(remote, version)
    invite = {
        "type": "m.room.member", "state_key": invitee, "sender": f"@alice:{REMOTE}", "room_id": room_id,
        "content": {"membership": "invite"}, "prev_events": [create_id],
        "auth_events": [] if version == "12" else [create_id], "depth": 2, "origin_server_ts": now_ms(),
    }  # fmt: skip
    pdu, event_id = remote.sign_pdu(invite, version)
    stripped = [
        {"type": "m.room.name", "state_key": "", "sender": f"@alice:{REMOTE}", "content": {"name": "Far"}}
    ]
    return (
        room_id,
        event_id,
        {"room_version": version, "event": pdu, "invite_room_state": [create, *stripped]},
    )


def _invite_state_seen_by(user: User) -> dict[str, Any]:
    memberships = sync_store.get_user_memberships(user.user_id)
    invites, _ = build_stripped_rooms(invites=[m for m in memberships if m.membership == "invite"], knocks=[])
    return invites


@pytest.mark.parametrize("version", ["10", "12"])
def test_an_invite_of_our_user_is_signed_by_us_and_shown_in_their_sync(remote, version) -> None:
    user = make_user()
    room_id, event_id, body = _invite_body(remote, version, user.user_id)
    status, answer = remote.call("PUT", f"/_matrix/federation/v2/invite/{room_id}/{event_id}", body)
    assert status == 200, answer
    assert set(answer["event"]["signatures"]) == {REMOTE, get_server_name()}
    assert _membership(room_id, user.user_id) == "invite"
    invites = _invite_state_seen_by(user)
    names = [e["content"] for e in invites[room_id]["invite_state"]["events"] if e["type"] == "m.room.name"]
    assert names == [{"name": "Far"}]
    # Our signature verifies on what we answered.
    stored = event_store.get_event_by_id(event_id)
    assert stored is not None and stored.outlier and stored.event.membership == "invite"
    assert Event(answer["event"], get_room_version(version)).event_id == event_id


@pytest.mark.parametrize(
    ("case", "status", "errcode"),
    [
        ("v12 create of another room", 400, "M_BAD_JSON"),
        ("v12 without create", 400, "M_BAD_JSON"),
        ("unsupported version", 400, "M_INCOMPATIBLE_ROOM_VERSION"),
        ("invitee of another server", 403, "M_FORBIDDEN"),
        ("other event in path", 400, "M_BAD_JSON"),
    ],
)
def test_a_bad_invite_is_refused_and_stores_nothing(remote, case, status, errcode) -> None:
    user = make_user()
    room_id, event_id, body = _invite_body(remote, "12", user.user_id)
    if case == "v12 create of another room":
        _, other_create, _ = _remote_room(remote, "12")
        other_create = {**other_create, "origin_server_ts": other_create["origin_server_ts"] + 1}
        body["invite_room_state"][0] = remote.sign_pdu(
            {k: v for k, v in other_create.items() if k not in ("signatures", "hashes")}, "12"
        )[0]
    elif case == "v12 without create":
        body["invite_room_state"] = body["invite_room_state"][1:]
    elif case == "unsupported version":
        body["room_version"] = "1"
    elif case == "invitee of another server":
        room_id, event_id, body = _invite_body(remote, "12", "@someone:elsewhere.test")
    elif case == "other event in path":
        event_id = "$" + "B" * 43
    got, answer = remote.call("PUT", f"/_matrix/federation/v2/invite/{room_id}/{event_id}", body)
    assert (got, answer["errcode"]) == (status, errcode), answer
    assert room_store.get_room(room_id) is None
    assert _invite_state_seen_by(user) == {}


def test_query_directory_answers_a_local_alias_with_the_servers_in_the_room(remote) -> None:
    creator = make_user()
    alias = f"#lobby:{get_server_name()}"
    room_id = make_room(creator, preset="public_chat", room_alias_name="lobby")
    status, body = remote.call("GET", "/_matrix/federation/v1/query/directory", query={"room_alias": alias})
    assert (status, body) == (200, {"room_id": room_id, "servers": [get_server_name()]})
    status, body = remote.call(
        "GET", "/_matrix/federation/v1/query/directory", query={"room_alias": f"#none:{get_server_name()}"}
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


def test_an_invite_into_a_room_we_are_in_is_persisted_as_an_event_of_the_room(remote) -> None:
    alice, carol = make_user(), make_user()
    room_id = make_room(alice, preset="public_chat", room_version="11")
    bob = f"@bob:{REMOTE}"
    assert _handshake(remote, "join", room_id, bob, version="11")[0] == 200
    set_state(alice, room_id, "m.room.power_levels", {"users": {alice.user_id: 100, bob: 50}, "invite": 50})
    room = room_store.get_room(room_id)
    assert room is not None
    content = {"membership": "invite"}
    keys = auth_types_for_event(
        get_room_version("11"),
        event_type="m.room.member",
        state_key=carol.user_id,
        sender=bob,
        content=content,
    )
    state = state_store.get_current_state_events(room, keys)
    extremities = event_store.get_forward_extremities(room)
    invite, event_id = remote.sign_pdu(
        {"type": "m.room.member", "state_key": carol.user_id, "sender": bob, "room_id": room_id,
         "content": content, "prev_events": [e.event_id for e in extremities],
         "auth_events": [state[k].event_id for k in keys if k in state],
         "depth": max(e.depth for e in extremities) + 1, "origin_server_ts": now_ms()},
        "11",
    )  # fmt: skip
    body = {"room_version": "11", "event": invite, "invite_room_state": []}
    status, answer = remote.call("PUT", f"/_matrix/federation/v2/invite/{room_id}/{event_id}", body)
    assert status == 200, answer
    stored = event_store.get_event_by_id(event_id)
    assert stored is not None and not stored.outlier and stored.stream_ordering is not None
    assert _membership(room_id, carol.user_id) == "invite"
    assert get_server_name() in answer["event"]["signatures"]


def test_an_invite_into_a_room_the_admins_blocked_is_refused_and_stores_nothing(remote) -> None:
    from dagcore.actions.audit import Actor
    from dagcore.actions.room_admin import check_set_block

    user = make_user()
    room_id, event_id, body = _invite_body(remote, "10", user.user_id)
    check_set_block(room_id=room_id, block=True, actor=Actor(user_id="@root:test", via="api"))
    status, answer = remote.call("PUT", f"/_matrix/federation/v2/invite/{room_id}/{event_id}", body)
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")
    assert room_store.get_room(room_id) is None and event_store.get_event_by_id(event_id) is None

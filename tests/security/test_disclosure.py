"""Class 6 — information disclosure: what a user may not see is never in any answer,
and refusals do not reveal whether a private room exists.

The federation side (which events another server may read) is decided by
``dagcore.protocol.server_visibility``, unit-tested in ``dagcore/protocol/tests/test_server_visibility.py``
until the Embassy serves event, state, backfill and get_missing_events."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.security.kit import assert_error, room_dump, send_text, shared_room
from tests.support.client import MatrixClient, q
from tests.support.e2e_keys import CrossSigningKeys


def test_private_rooms_are_not_listed_in_the_public_directory(make_client) -> None:
    alice, mallory = make_client(), make_client()
    secret, public = f"secret{secrets.token_hex(4)}", f"open{secrets.token_hex(4)}"
    alice.create_room(preset="private_chat", name=secret)
    alice.create_room(preset="public_chat", name=secret + "-unlisted")  # public join rule, not published
    alice.create_room(visibility="public", name=public)
    spec = "/publicRooms"
    listed = mallory.post("/publicRooms", {"filter": {"generic_search_term": secret}}, spec=spec).json
    assert listed["chunk"] == [] and secret not in str(listed)
    everything = mallory.get("/publicRooms", params={"limit": 1000}, spec=spec).json
    assert secret not in str(everything)
    # Control: the published room is listed.
    found = mallory.post("/publicRooms", {"filter": {"generic_search_term": public}}, spec=spec).json["chunk"]
    assert [r["name"] for r in found] == [public]


def test_the_user_directory_only_shows_users_you_share_a_room_with(make_client) -> None:
    tag = secrets.token_hex(4)
    alice, bob, loner = make_client(f"dir{tag}a"), make_client(f"dir{tag}b"), make_client(f"dir{tag}c")
    room = alice.create_room(preset="private_chat")
    alice.post(f"/rooms/{q(room)}/invite", {"user_id": bob.user_id})
    bob.join(room)
    loner.create_room(preset="private_chat")
    spec = "/user_directory/search"
    found = {r["user_id"] for r in alice.post(spec, {"search_term": f"dir{tag}"}, spec=spec).json["results"]}
    assert bob.user_id in found  # control
    assert loner.user_id not in found
    assert found <= {alice.user_id, bob.user_id}
    # The loner sees nobody of that private room.
    theirs = {r["user_id"] for r in loner.post(spec, {"search_term": f"dir{tag}"}, spec=spec).json["results"]}
    assert theirs <= {loner.user_id}


def test_a_deactivated_users_profile_is_gone(make_client) -> None:
    alice, bob = make_client(), make_client()
    spec = "/profile/{userId}"
    bob.put(f"/profile/{q(bob.user_id)}/displayname", {"displayname": "Bob Secret"})
    assert alice.get(f"/profile/{q(bob.user_id)}", spec=spec).json["displayname"] == "Bob Secret"  # control
    uia = {"type": "m.login.password", "password": "correct horse battery",
           "identifier": {"type": "m.id.user", "user": bob.user_id}}  # fmt: skip
    r = bob.post("/account/deactivate", {"auth": uia}, expect=None)
    if r.status == 401:
        bob.post("/account/deactivate", {"auth": {**uia, "session": r.json["session"]}})
    for path in (f"/profile/{q(bob.user_id)}", f"/profile/{q(bob.user_id)}/displayname"):
        r = alice.get(path, expect=None)
        assert_error(r, 404, "M_NOT_FOUND")
        assert "Bob Secret" not in r.raw.text
    found = alice.post("/user_directory/search", {"search_term": "Bob Secret"}).json["results"]
    assert all(u["user_id"] != bob.user_id for u in found)


def test_keys_query_never_shows_another_users_user_signing_key(make_client) -> None:
    alice, bob = make_client(), make_client()
    assert alice.user_id
    keys = CrossSigningKeys(alice.user_id)
    alice.post("/keys/device_signing/upload", keys.upload_body(), spec="/keys/device_signing/upload")
    body: dict[str, Any] = {"device_keys": {alice.user_id: []}}
    theirs = bob.post("/keys/query", body, spec="/keys/query").json
    assert alice.user_id not in theirs.get("user_signing_keys", {})
    assert keys.key_object("user_signing")["keys"].popitem()[1] not in str(theirs)
    mine = alice.post("/keys/query", body, spec="/keys/query").json
    assert alice.user_id in mine["user_signing_keys"]  # control


PROBES = [
    ("GET", "/rooms/{room}/state", None),
    ("GET", "/rooms/{room}/state/m.room.create/", None),
    ("GET", "/rooms/{room}/messages?dir=b", None),
    ("GET", "/rooms/{room}/members", None),
    ("GET", "/rooms/{room}/joined_members", None),
    ("GET", "/rooms/{room}/event/$abc", None),
    ("GET", "/rooms/{room}/context/$abc", None),
    ("GET", "/rooms/{room}/aliases", None),
    ("GET", "/_matrix/client/v1/rooms/{room}/threads", None),
    ("GET", "/_matrix/client/v1/rooms/{room}/relations/$abc", None),
    ("POST", "/rooms/{room}/join", {}),
    ("POST", "/join/{room}", {}),
    ("POST", "/rooms/{room}/leave", {}),
    ("POST", "/rooms/{room}/invite", {"user_id": "@someone:localhost"}),
    ("POST", "/rooms/{room}/kick", {"user_id": "@someone:localhost"}),
    ("POST", "/rooms/{room}/ban", {"user_id": "@someone:localhost"}),
    ("PUT", "/rooms/{room}/send/m.room.message/t1", {"msgtype": "m.text", "body": "x"}),
    ("PUT", "/rooms/{room}/state/m.room.topic/", {"topic": "x"}),
    ("PUT", "/rooms/{room}/redact/$abc/t1", {}),
    ("PUT", "/rooms/{room}/typing/{me}", {"typing": True}),
    ("POST", "/rooms/{room}/receipt/m.read/$abc", {}),
    ("POST", "/rooms/{room}/read_markers", {"m.fully_read": "$abc"}),
    ("POST", "/rooms/{room}/upgrade", {"new_version": "11"}),
    ("POST", "/rooms/{room}/report/$abc", {"reason": "x"}),
    ("POST", "/rooms/{room}/forget", {}),
]


@pytest.mark.parametrize(("method", "template", "body"), PROBES, ids=[f"{m} {t}" for m, t, _ in PROBES])
def test_an_outsider_cannot_tell_a_private_room_from_a_missing_one(
    make_client,
    method: str,
    template: str,
    body: dict | None,
) -> None:
    alice, mallory = make_client(), make_client()
    private = alice.create_room(preset="private_chat")
    missing = f"!{secrets.token_urlsafe(18)}:localhost"
    answers = []
    for room in (private, missing):
        path = template.format(room=q(room), me=q(mallory.user_id))
        r = mallory.request(method, path, body, expect=None)
        assert r.status < 500 and isinstance(r.json, dict), r
        answers.append((r.status, r.json.get("errcode")))
    assert answers[0] == answers[1], answers
    # Control: the member gets an ordinary answer on read paths.
    if method == "GET" and "$abc" not in template:
        alice.get(template.format(room=q(private), me=q(alice.user_id)))


def test_a_departed_member_sees_nothing_after_leaving(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = shared_room(alice, bob, preset="public_chat")
    before = send_text(alice, room, "while bob was here")
    bob.post(f"/rooms/{q(room)}/leave", {})
    alice.put(f"/rooms/{q(room)}/state/m.room.join_rules/", {"join_rule": "invite"})
    alice.put(f"/rooms/{q(room)}/state/m.room.name/", {"name": "renamed after bob left"})
    after = send_text(alice, room, "after bob left")
    dump = room_dump(bob, room)
    assert before in dump  # control: history up to the departure
    assert after not in dump and "renamed after bob left" not in dump
    assert_error(bob.get(f"/rooms/{q(room)}/event/{q(after)}", expect=None), 404, "M_NOT_FOUND")
    assert bob.get(f"/rooms/{q(room)}/state/m.room.name/", expect=None).status == 404
    members = bob.get(f"/rooms/{q(room)}/members").json["chunk"]
    assert all("renamed" not in str(m) for m in members)


def test_sync_shows_an_outsider_nothing_of_a_private_room(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = alice.create_room(preset="private_chat", name="sync secret")
    send_text(alice, room, "sync secret text")
    body = mallory.sync()
    assert room not in str(body) and "sync secret" not in str(body)
    assert room in str(alice.sync())  # control


def test_an_invitee_sees_only_the_stripped_state_until_joining(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="private_chat", name="invite room")
    send_text(alice, room, "members-only text")
    alice.post(f"/rooms/{q(room)}/invite", {"user_id": bob.user_id})
    body = bob.sync()
    assert room in body["rooms"]["invite"]
    assert "members-only text" not in str(body)
    assert "invite room" in str(body["rooms"]["invite"][room])  # stripped state: the name is shown


def test_a_failed_login_does_not_tell_whether_the_account_exists(make_client, dagma_server) -> None:
    alice = make_client()
    anon = MatrixClient(dagma_server.base_url)
    answers = []
    for user in (alice.user_id, f"@nobody{secrets.token_hex(4)}:localhost"):
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": "wrong",
        }
        r = anon.post("/login", body, expect=None, auth=False)
        answers.append((r.status, r.json))
    assert answers[0] == answers[1]
    assert answers[0][0] == 403
    anon.close()


def test_redacted_content_is_gone_for_everyone(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = shared_room(alice, bob)
    event_id = send_text(bob, room, "regret")
    bob.put(f"/rooms/{q(room)}/redact/{q(event_id)}/t1", {})
    for reader in (alice, bob):
        assert "regret" not in room_dump(reader, room)
        got = reader.get(f"/rooms/{q(room)}/event/{q(event_id)}").json
        assert got["content"] == {}


def test_search_never_finds_events_of_rooms_you_cannot_read(make_client) -> None:
    alice, mallory = make_client(), make_client()
    room = alice.create_room(preset="private_chat")
    word = f"needle{secrets.token_hex(4)}"
    send_text(alice, room, f"the {word} is here")
    body = {"search_categories": {"room_events": {"search_term": word}}}
    r = mallory.post("/search", body, spec="/search")
    found = r.json["search_categories"]["room_events"]
    assert found["results"] == [] and found["count"] == 0 and room not in r.raw.text
    assert "the " + word not in r.raw.text  # (the term itself comes back only as a highlight)
    mine = alice.post("/search", body).raw.text
    assert word in mine  # control: the member finds it

"""Class 5 — the path names one thing, the body or the event ID another: the path's scope wins.

An ID taken from room B, used under ``/rooms/{A}/...``, answers exactly as an
unknown ID would; a user ID in the path that is not the requester's is refused.
The federation side (send_join, send_knock, send_leave, invite bodies against their paths) is
checked by ``dagcore.protocol.membership_events``, unit-tested in
``dagcore/protocol/tests/test_membership_events.py`` until the Embassy serves those endpoints.
"""

from __future__ import annotations

import pytest

from tests.security.kit import (
    STATE,
    assert_error,
    assert_unharmed,
    marker,
    room_dump,
    send_text,
    shared_room,
    txn,
)
from tests.support.client import q


@pytest.fixture
def two_rooms(make_client):
    """alice and mallory share room A; room B is alice's (and bob's) alone."""
    alice, bob, mallory = make_client(), make_client(), make_client()
    room_a = shared_room(alice, mallory)
    room_b = alice.create_room(preset="private_chat")
    alice.post(f"/rooms/{q(room_b)}/invite", {"user_id": bob.user_id})
    bob.join(room_b)
    event_b = send_text(alice, room_b, "room B's secret")
    return alice, bob, mallory, room_a, room_b, event_b


def test_a_state_event_lands_in_the_room_of_the_path_whatever_the_body_says(two_rooms) -> None:
    alice, bob, mallory, room_a, room_b, _ = two_rooms
    mark = marker()
    body = {"room_id": room_b, "state_key": "", "type": "m.room.name", "x": mark}
    # alice administers both rooms: the path says A, so the event is A's, whatever the body says.
    event_id = alice.put(f"/rooms/{q(room_a)}/state/org.example.s/", body, spec=STATE).json["event_id"]
    assert event_id in room_dump(mallory, room_a)
    assert event_id not in room_dump(bob, room_b)
    # Writing into room B by naming it in the path is refused (not a member).
    r = mallory.put(f"/rooms/{q(room_b)}/state/org.example.s/", body, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    assert mark not in room_dump(alice, room_b)
    assert_unharmed(alice, bob, room_b, absent=mark)


def test_redacting_an_event_of_another_room_is_refused(two_rooms) -> None:
    alice, bob, mallory, room_a, room_b, event_b = two_rooms
    spec = "/rooms/{roomId}/redact/{eventId}/{txnId}"
    for attacker in (mallory, alice):  # even the admin of both rooms: the path is room A
        r = attacker.put(f"/rooms/{q(room_a)}/redact/{q(event_b)}/{txn()}", {}, expect=None)
        assert_error(r, 404, "M_NOT_FOUND")
        r = attacker.put(
            f"/rooms/{q(room_a)}/send/m.room.redaction/{txn()}", {"redacts": event_b}, expect=None
        )
        assert_error(r, 404, "M_NOT_FOUND")
    assert bob.get(f"/rooms/{q(room_b)}/event/{q(event_b)}").json["content"]["body"] == "room B's secret"
    assert event_b not in room_dump(alice, room_a)
    # Control: redacting it in its own room works.
    alice.put(f"/rooms/{q(room_b)}/redact/{q(event_b)}/{txn()}", {}, spec=spec)
    assert_unharmed(alice, bob, room_b)


@pytest.mark.parametrize(
    "template",
    [
        "/rooms/{a}/event/{e}",
        "/rooms/{a}/context/{e}",
        "/_matrix/client/v1/rooms/{a}/relations/{e}",
        "/_matrix/client/v1/rooms/{a}/relations/{e}/m.annotation",
    ],
)
def test_reading_an_event_of_another_room_through_this_room_answers_not_found(
    two_rooms, template: str
) -> None:
    alice, _bob, mallory, room_a, room_b, event_b = two_rooms
    for reader in (mallory, alice):
        r = reader.get(template.format(a=q(room_a), e=q(event_b)), expect=None)
        assert_error(r, 404, "M_NOT_FOUND")
        assert "secret" not in r.raw.text
    # Control: through its own room, a member reads it.
    alice.get(template.format(a=q(room_b), e=q(event_b)))


def test_a_relation_sent_in_another_room_is_not_bundled_or_listed(two_rooms) -> None:
    _alice, bob, mallory, room_a, room_b, event_b = two_rooms
    annotation = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_b, "key": "👎"}}
    mallory.put(f"/rooms/{q(room_a)}/send/m.reaction/{txn()}", annotation)
    thread = {"msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": event_b}}
    mallory.put(f"/rooms/{q(room_a)}/send/m.room.message/{txn()}", thread)
    relations = bob.get(f"/_matrix/client/v1/rooms/{q(room_b)}/relations/{q(event_b)}",
                        spec="/rooms/{roomId}/relations/{eventId}").json["chunk"]  # fmt: skip
    assert relations == []
    seen = bob.get(f"/rooms/{q(room_b)}/event/{q(event_b)}").json
    assert "m.relations" not in seen.get("unsigned", {})
    threads = bob.get(f"/_matrix/client/v1/rooms/{q(room_b)}/threads").json["chunk"]
    assert threads == []
    # Control: the same reaction inside room B is bundled.
    bob.put(f"/rooms/{q(room_b)}/send/m.reaction/{txn()}", annotation)
    relations = bob.get(f"/_matrix/client/v1/rooms/{q(room_b)}/relations/{q(event_b)}").json["chunk"]
    assert len(relations) == 1


def test_receipts_and_reports_for_an_event_of_another_room_are_refused(two_rooms) -> None:
    alice, _bob, mallory, room_a, _room_b, event_b = two_rooms
    r = mallory.post(f"/rooms/{q(room_a)}/receipt/m.read/{q(event_b)}", {}, expect=None)
    assert_error(r, 404, "M_NOT_FOUND")
    r = mallory.post(f"/rooms/{q(room_a)}/report/{q(event_b)}", {"reason": "x"}, expect=None)
    assert_error(r, 404, "M_NOT_FOUND")
    own = send_text(alice, room_a, "in A")
    mallory.post(
        f"/rooms/{q(room_a)}/receipt/m.read/{q(own)}",
        {},
        spec="/rooms/{roomId}/receipt/{receiptType}/{eventId}",
    )
    mallory.post(
        f"/rooms/{q(room_a)}/report/{q(own)}", {"reason": "x"}, spec="/rooms/{roomId}/report/{eventId}"
    )


def test_another_users_profile_cannot_be_changed(make_client) -> None:
    alice, mallory = make_client(), make_client()
    spec = "/profile/{userId}/{keyName}"
    alice.put(f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice"}, spec=spec)
    for key, body in (("displayname", {"displayname": "pwned"}), ("avatar_url", {"avatar_url": "mxc://x/y"})):
        r = mallory.put(f"/profile/{q(alice.user_id)}/{key}", body, expect=None)
        assert_error(r, 403, "M_FORBIDDEN")
        assert_error(mallory.delete(f"/profile/{q(alice.user_id)}/{key}", expect=None), 403, "M_FORBIDDEN")
    assert alice.get(f"/profile/{q(alice.user_id)}", spec="/profile/{userId}").json["displayname"] == "Alice"
    mallory.put(f"/profile/{q(mallory.user_id)}/displayname", {"displayname": "M"}, spec=spec)


@pytest.mark.parametrize(
    ("method", "template", "body"),
    [
        ("GET", "/user/{other}/account_data/org.example", None),
        ("PUT", "/user/{other}/account_data/org.example", {"a": 1}),
        ("GET", "/user/{other}/rooms/{room}/account_data/org.example", None),
        ("PUT", "/user/{other}/rooms/{room}/account_data/org.example", {"a": 1}),
        ("GET", "/user/{other}/rooms/{room}/tags", None),
        ("PUT", "/user/{other}/rooms/{room}/tags/u.x", {}),
        ("DELETE", "/user/{other}/rooms/{room}/tags/u.x", None),
        ("POST", "/user/{other}/filter", {}),
        ("GET", "/user/{other}/filter/0", None),
    ],
)
def test_another_users_account_data_tags_and_filters_are_out_of_reach(
    make_client,
    method: str,
    template: str,
    body: dict | None,
) -> None:
    alice, mallory = make_client(), make_client()
    room = shared_room(alice, mallory)
    alice.put(f"/user/{q(alice.user_id)}/account_data/org.example", {"secret": "alice's"})
    alice.put(f"/user/{q(alice.user_id)}/rooms/{q(room)}/account_data/org.example", {"secret": "alice's"})
    alice.post(f"/user/{q(alice.user_id)}/filter", {"room": {"timeline": {"limit": 1}}})
    path = template.format(other=q(alice.user_id), room=q(room))
    r = mallory.request(method, path, body, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    assert "alice's" not in r.raw.text
    got = alice.get(f"/user/{q(alice.user_id)}/account_data/org.example").json
    assert got == {"secret": "alice's"}
    # Control: the same request on one's own user ID is served.
    mine = template.format(other=q(mallory.user_id), room=q(room))
    if method == "GET" and "filter" not in mine and "tags" not in mine:
        mallory.put(mine, {"a": 1})
    r = mallory.request(method, mine, body, expect=None)
    assert r.status in (200, 404), r  # 404: e.g. filter 0 was never created by mallory


def test_another_users_devices_look_unknown(make_client) -> None:
    alice, mallory = make_client(), make_client()
    device = alice.device_id
    assert_error(mallory.get(f"/devices/{q(device)}", expect=None), 404, "M_NOT_FOUND")
    assert_error(
        mallory.put(f"/devices/{q(device)}", {"display_name": "pwned"}, expect=None), 404, "M_NOT_FOUND"
    )
    r = mallory.delete(f"/devices/{q(device)}", {"auth": {"type": "m.login.password", "password": "correct horse battery",
                       "identifier": {"type": "m.id.user", "user": mallory.user_id}}}, expect=None)  # fmt: skip
    assert r.status in (200, 404), r
    uia = {"type": "m.login.password", "password": "correct horse battery",
           "identifier": {"type": "m.id.user", "user": mallory.user_id}}  # fmt: skip
    r = mallory.post("/delete_devices", {"devices": [device], "auth": uia}, expect=None)
    assert r.status in (200, 404), r
    # alice's device and token still work, and its name is hers.
    # (no spec check: display_name is null, as Synapse sends, see tribune/views/devices.py)
    got = alice.get(f"/devices/{q(device)}").json
    assert got["display_name"] != "pwned"
    alice.get("/account/whoami", spec="/account/whoami")
    # Control: mallory renames her own device.
    mallory.put(f"/devices/{q(mallory.device_id)}", {"display_name": "mine"}, spec="/devices/{deviceId}")


def test_typing_in_a_room_you_are_not_in_is_refused(two_rooms) -> None:
    alice, bob, mallory, room_a, room_b, _ = two_rooms
    r = mallory.put(
        f"/rooms/{q(room_b)}/typing/{q(mallory.user_id)}", {"typing": True, "timeout": 1000}, expect=None
    )
    assert_error(r, 403, "M_FORBIDDEN")
    mallory.put(f"/rooms/{q(room_a)}/typing/{q(mallory.user_id)}", {"typing": True, "timeout": 1000},
                spec="/rooms/{roomId}/typing/{userId}")  # fmt: skip
    assert_unharmed(alice, bob, room_b)


def test_upgrading_or_reporting_a_room_needs_membership(two_rooms) -> None:
    alice, bob, mallory, _room_a, room_b, _ = two_rooms
    r = mallory.post(f"/rooms/{q(room_b)}/upgrade", {"new_version": "11"}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    assert_unharmed(alice, bob, room_b)

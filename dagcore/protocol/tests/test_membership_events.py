"""Class 5 (federation side): the membership event in a send_join / send_knock / send_leave /
invite body must be the one the path names, for the right user. Each refusal beside a control."""

from __future__ import annotations

from typing import Any

import pytest

from dagcore.protocol.hashing import add_content_hash, compute_event_id
from dagcore.protocol.membership_events import (
    MembershipRequestError,
    check_invite_event,
    check_join_event,
    check_knock_event,
    check_leave_event,
)
from dagcore.protocol.room_versions import get_room_version

V11 = get_room_version("11")
ROOM = "!room:us.test"
OTHER_ROOM = "!other:us.test"


def member(
    membership: str, *, sender: str = "@bob:them.test", state_key: str | None = None, **extra: Any
) -> dict:
    pdu: dict[str, Any] = {
        "room_id": ROOM,
        "sender": sender,
        "type": "m.room.member",
        "state_key": sender if state_key is None else state_key,
        "content": {"membership": membership},
        "depth": 7,
        "origin_server_ts": 1_700_000_000_000,
        "prev_events": ["$" + "a" * 43],
        "auth_events": ["$" + "b" * 43],
    }
    pdu.update(extra)
    return add_content_hash(pdu)


def eid(pdu: dict) -> str:
    return compute_event_id(pdu, V11)


CHECKS = {"join": check_join_event, "knock": check_knock_event, "leave": check_leave_event}


@pytest.mark.parametrize("membership", list(CHECKS))
def test_own_membership_handshakes(membership: str) -> None:
    check = CHECKS[membership]
    good = member(membership)
    kw: dict[str, Any] = {
        "path_room_id": ROOM,
        "path_event_id": eid(good),
        "room_version": V11,
        "origin": "them.test",
    }
    assert check(good, **kw) == good  # control

    def refused(pdu: Any, forbidden: bool = False, **changes: Any) -> None:
        with pytest.raises(MembershipRequestError) as exc:
            check(pdu, **{**kw, **changes})
        assert exc.value.http_status == (403 if forbidden else 400)

    other_room = member(membership, room_id=OTHER_ROOM)
    refused(other_room, path_event_id=eid(other_room))  # the path's room, another room's event
    refused(good, path_event_id="$" + "c" * 43)  # another event than the path's
    refused(good, path_room_id=OTHER_ROOM)
    other_membership = "leave" if membership != "leave" else "join"
    wrong = member(other_membership)
    refused(wrong, path_event_id=eid(wrong))
    for_someone_else = member(membership, state_key="@carol:them.test")
    refused(for_someone_else, path_event_id=eid(for_someone_else))
    refused(good, forbidden=True, origin="evil.test")  # a server speaking for another's user
    message = {**good, "type": "m.room.message"}
    refused(message, path_event_id=eid(message))
    refused(["not", "an", "object"])


def test_knocking_needs_a_room_version_with_knocks() -> None:
    v6 = get_room_version("6")
    knock = member("knock")
    with pytest.raises(MembershipRequestError):
        check_knock_event(knock, path_room_id=ROOM, path_event_id=compute_event_id(knock, v6),
                          room_version=v6, origin="them.test")  # fmt: skip


def test_invites_are_for_our_users_from_the_requesting_servers_users() -> None:
    invite = member("invite", sender="@bob:them.test", state_key="@alice:us.test")
    kw: dict[str, Any] = {"path_room_id": ROOM, "path_event_id": eid(invite), "room_version": V11, "origin": "them.test",
          "our_server_name": "us.test"}  # fmt: skip
    assert check_invite_event(invite, **kw) == invite  # control
    elsewhere = member("invite", sender="@bob:them.test", state_key="@alice:third.test")
    with pytest.raises(MembershipRequestError) as exc:
        check_invite_event(elsewhere, **{**kw, "path_event_id": eid(elsewhere)})
    assert exc.value.http_status == 403
    with pytest.raises(MembershipRequestError) as exc:
        check_invite_event(invite, **{**kw, "origin": "evil.test"})
    assert exc.value.http_status == 403
    with pytest.raises(MembershipRequestError):
        check_invite_event(invite, **{**kw, "path_room_id": OTHER_ROOM})


def test_v1_events_are_matched_by_their_event_id_field() -> None:
    v1 = get_room_version("1", require_supported=False)  # existing v1 rooms still federate
    join = member("join", event_id="$abc:them.test")
    kw: dict[str, Any] = {"path_room_id": ROOM, "room_version": v1, "origin": "them.test"}
    assert check_join_event(join, path_event_id="$abc:them.test", **kw) == join
    with pytest.raises(MembershipRequestError):
        check_join_event(join, path_event_id="$other:them.test", **kw)

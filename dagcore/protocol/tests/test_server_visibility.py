"""Class 6 (federation side): what another server may read of a room, beside controls."""

from __future__ import annotations

import pytest

from dagcore.protocol.server_visibility import server_in_room, server_may_see_event


def test_only_servers_with_a_joined_member_are_in_the_room() -> None:
    joined = ["@alice:us.test", "@bob:them.test"]
    assert server_in_room("them.test", joined)  # control
    assert not server_in_room("evil.test", joined)
    assert not server_in_room("them.test", ["@alice:us.test"])
    assert not server_in_room("them.test", ["not-a-user-id"])


def see(server: str, visibility: str | None, memberships: dict[str, str], **event: str) -> bool:
    return server_may_see_event(
        server,
        event_type=event.get("event_type", "m.room.message"),
        state_key=event.get("state_key"),
        history_visibility=visibility,
        memberships_at_event=memberships,
    )


@pytest.mark.parametrize("visibility", ["world_readable", "shared", None])
def test_open_history_is_visible_to_servers_in_the_room(visibility: str | None) -> None:
    assert see("them.test", visibility, {"@alice:us.test": "join"})


@pytest.mark.parametrize(
    ("visibility", "membership", "visible"),
    [
        ("joined", "join", True),
        ("joined", "invite", False),
        ("joined", "leave", False),
        ("invited", "invite", True),
        ("invited", "join", True),
        ("invited", "leave", False),
        ("invited", "ban", False),
    ],
)
def test_restricted_history_needs_a_member_of_the_server_at_the_event(
    visibility: str, membership: str, visible: bool
) -> None:
    memberships = {"@alice:us.test": "join", "@bob:them.test": membership}
    assert see("them.test", visibility, memberships) is visible
    # Another server's member never counts for this one.
    assert see("them.test", visibility, {"@alice:us.test": "join", "@mallory:evil.test": "join"}) is False


def test_a_server_sees_its_own_users_membership_events() -> None:
    assert see("them.test", "joined", {}, event_type="m.room.member", state_key="@bob:them.test")
    assert not see("evil.test", "joined", {}, event_type="m.room.member", state_key="@bob:them.test")

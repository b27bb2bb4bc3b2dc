"""Synapse's admin API about the server itself, answered truthfully by a real Politburo:
no background updates (Dagma migrates before it serves), admin jobs as scheduled tasks,
no per-user experimental features, and per-user activity counts."""

from __future__ import annotations

import pytest

from tests.politburo.conftest import Console
from tests.support.client import q

A = "/_synapse/admin/v1"


def test_background_updates_are_none_and_their_jobs_are_answered_by_name(console: Console) -> None:
    status = console.api("GET", f"{A}/background_updates/status")
    assert status.status_code == 200 and status.json() == {"enabled": True, "current_updates": {}}
    paused = console.api("POST", f"{A}/background_updates/enabled", json={"enabled": False})
    assert paused.json() == {"enabled": False}
    assert console.api("GET", f"{A}/background_updates/enabled").json() == {"enabled": False}
    assert console.api("POST", f"{A}/background_updates/enabled", json={"enabled": True}).json() == {
        "enabled": True
    }
    bad = console.api("POST", f"{A}/background_updates/enabled", json={"enabled": "no"})
    assert bad.status_code == 400 and bad.json()["errcode"] == "M_INVALID_PARAM"

    assert (
        console.api(
            "POST", f"{A}/background_updates/start_job", json={"job_name": "regenerate_directory"}
        ).json()
        == {}
    )
    resign = console.api("POST", f"{A}/background_updates/start_job", json={"job_name": "event_resign"})
    assert resign.status_code == 400 and "signing_key rotate" in resign.json()["error"]
    unknown = console.api("POST", f"{A}/background_updates/start_job", json={"job_name": "nope"})
    assert unknown.status_code == 400 and unknown.json()["errcode"] == "M_UNKNOWN"


def test_scheduled_tasks_list_admin_jobs_with_synapses_filters(console: Console) -> None:
    answer = console.api("GET", f"{A}/scheduled_tasks")
    assert answer.status_code == 200 and isinstance(answer.json()["scheduled_tasks"], list)
    assert console.api(
        "GET", f"{A}/scheduled_tasks", params={"status": "failed", "action_name": "none"}
    ).json() == {"scheduled_tasks": []}
    bad = console.api("GET", f"{A}/scheduled_tasks", params={"max_timestamp": "soon"})
    assert bad.status_code == 400


def test_no_experimental_feature_is_offered_and_an_unknown_one_is_refused(console: Console) -> None:
    user = f"{A}/experimental_features/{q(console.admin_user_id)}"
    assert console.api("GET", user).json() == {"features": {}}
    refused = console.api("PUT", user, json={"features": {"msc3881": True}})
    assert refused.status_code == 400 and "msc3881" in refused.json()["error"]
    assert console.api("PUT", user, json={"features": {}}).status_code == 200
    missing = console.api("GET", f"{A}/experimental_features/{q('@nobody:localhost')}")
    assert missing.status_code == 404


def test_invites_sent_and_rooms_joined_since_a_time(console: Console) -> None:
    alice, bob = console.register(), console.register()
    assert alice.user_id is not None and bob.user_id is not None
    alice_id, bob_id = alice.user_id, bob.user_id
    try:
        before = console.api("GET", f"{A}/users/{q(alice_id)}/sent_invite_count", params={"from_ts": "0"})
        assert before.json() == {"invite_count": 0}
        rooms = [alice.create_room(preset="private_chat") for _ in range(2)]
        for room_id in rooms:
            alice.post(f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
            bob.post(f"/join/{q(room_id)}")
        bob.put(f"/profile/{q(bob_id)}/displayname", {"displayname": "Bob"})  # joins again, same rooms
        sent = console.api("GET", f"{A}/users/{q(alice_id)}/sent_invite_count", params={"from_ts": "0"})
        assert sent.json() == {"invite_count": 2}
        joined = console.api(
            "GET", f"{A}/users/{q(bob_id)}/cumulative_joined_room_count", params={"from_ts": "0"}
        )
        assert joined.json() == {"cumulative_joined_room_count": 2}
        later = console.api("GET", f"{A}/users/{q(bob_id)}/cumulative_joined_room_count",
                            params={"from_ts": "4102444800000"})  # fmt: skip  # 2100
        assert later.json() == {"cumulative_joined_room_count": 0}
        missing = console.api("GET", f"{A}/users/{q(bob_id)}/sent_invite_count")
        assert missing.status_code == 400
    finally:
        alice.close()
        bob.close()


@pytest.mark.parametrize("path", ["/background_updates/status", "/scheduled_tasks"])
def test_only_server_admins_may_ask(console: Console, path: str) -> None:
    user = console.register()
    try:
        assert console.api("GET", A + path, token=user.access_token).json()["errcode"] == "M_FORBIDDEN"
        assert console.api("GET", A + path, token=None).json()["errcode"] == "M_MISSING_TOKEN"
    finally:
        user.close()

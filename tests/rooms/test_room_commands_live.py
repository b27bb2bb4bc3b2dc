"""History purge on a running server (``manage.py purge_history`` beside ``serve all``):
the preview's counts are what goes, and ``/sync`` (initial and from a token older than the
purge point, synapse#12571), ``/messages`` and the room's integrity check still hold."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("purge"))
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def purge(server: LiveServer, *args: str) -> dict[str, Any]:
    done = server.manage("purge_history", *args, "--json")
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def walk_back(client: MatrixClient, room_id: str) -> list[dict[str, Any]]:
    """Every event ``/messages`` gives walking back from the room's end, until it says there are no more."""
    seen: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(50):
        params: dict[str, Any] = {"dir": "b", "limit": 4}
        if token:
            params["from"] = token
        page = client.get(f"/rooms/{q(room_id)}/messages", params=params).json
        seen += page["chunk"]
        if "end" not in page:
            return seen
        token = page["end"]
    raise AssertionError("/messages never reached the start of what is left")


def test_purge_before_an_event_removes_what_the_preview_counted_and_the_room_still_works(
    live: LiveServer,
) -> None:
    alice = MatrixClient(live.base_url).register()
    bob = MatrixClient(live.base_url).register()
    room_id = alice.create_room(preset="public_chat", name="old times")
    bob.join(room_id)
    old = [alice.send(room_id, f"old {i}") for i in range(6)] + [
        bob.send(room_id, f"bob old {i}") for i in range(4)
    ]
    alice.put(f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "before the purge"})
    early_token = alice.sync()["next_batch"]
    old.append(alice.send(room_id, "old last"))
    boundary = alice.send(room_id, "the purge stops here")
    newer = [bob.send(room_id, f"new {i}") for i in range(3)]
    late_token = alice.sync()["next_batch"]

    # Only local users here: without --delete-local-events nothing goes.
    kept = purge(live, room_id, "--before", boundary, "--dry-run")
    (room,) = kept["rooms"]
    assert room["counts"]["events"] == 0 and room["counts"]["local_events_kept"] >= len(old)

    preview = purge(live, room_id, "--before", boundary, "--delete-local-events", "--dry-run")["rooms"][0]
    assert preview["counts"]["events"] == len(old)  # the messages; state events only leave the timeline
    assert preview["boundary_event_id"] == boundary
    alice.send(room_id, "sent between the preview and the purge")
    done = purge(live, room_id, "--before", boundary, "--delete-local-events")["rooms"][0]
    assert done["deleted"]["events"] == preview["counts"]["events"]
    assert done["deleted"]["state_events"] == preview["counts"]["state_events"] > 0
    assert done["problems"] == []

    for event_id in old:
        assert (
            alice.get(f"/rooms/{q(room_id)}/event/{q(event_id)}", expect=404).json["errcode"] == "M_NOT_FOUND"
        )
    # /messages walks back to the purge point and stops there.
    walked = [e["event_id"] for e in walk_back(alice, room_id)]
    assert walked[-1] == boundary and set(newer) <= set(walked) and not set(old) & set(walked)
    # /sync: initial, from before the purge point, and from after it.
    initial = alice.sync()["rooms"]["join"][room_id]
    state = {
        (e["type"], e.get("state_key")) for e in initial["state"]["events"] + initial["timeline"]["events"]
    }
    assert ("m.room.topic", "") in state and ("m.room.member", bob.user_id) in state
    for since in (early_token, late_token):
        assert "next_batch" in alice.sync(since=since)
    assert bob.sync()["rooms"]["join"][room_id]["timeline"]["events"]
    # The room takes new events as before, and a second purge finds nothing more to remove.
    alice.send(room_id, "after the purge")
    again = purge(live, room_id, "--before", boundary, "--delete-local-events")["rooms"][0]
    assert again["deleted"]["events"] == 0 and again["problems"] == []


def test_purge_by_date_keeps_the_latest_event_and_bad_input_changes_nothing(live: LiveServer) -> None:
    alice = MatrixClient(live.base_url).register()
    room_id = alice.create_room(name="everything is old")
    sent = [alice.send(room_id, f"m {i}") for i in range(5)]
    # A date after every event: all goes but the latest event (the forward extremity).
    done = purge(live, room_id, "--before", "2999-01-01", "--delete-local-events")["rooms"][0]
    assert done["deleted"]["events"] == len(sent) - 1 and done["problems"] == []
    assert [e["event_id"] for e in walk_back(alice, room_id)] == [sent[-1]]
    assert alice.sync()["rooms"]["join"][room_id]["timeline"]["events"][-1]["event_id"] == sent[-1]
    for bad, says in (
        (["--before", "next tuesday"], b"Cannot read"),
        (["--before", "$nope"], b"not in the timeline"),
    ):
        result = live.manage("purge_history", room_id, *bad)
        assert result.returncode != 0 and says in result.stderr and b"Traceback" not in result.stderr, (
            result.stderr
        )
    # --all previews every room (here: nothing more to remove in this one).
    every = purge(live, "--all", "--before", "2999-01-01", "--dry-run")["rooms"]
    assert room_id in [r["room_id"] for r in every] and len(every) >= 2
    assert [r["counts"]["events"] for r in every if r["room_id"] == room_id] == [0]


def run_json(server: LiveServer, *args: str) -> dict[str, Any]:
    done = server.manage(*args, "--json")
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def test_room_versions_flags_old_rooms_and_upgrade_room_moves_them_to_a_new_version(live: LiveServer) -> None:
    alice = MatrixClient(live.base_url).register()
    old = alice.create_room(room_version="5", name="ancient")
    alice.create_room(room_version="10", name="recent")
    versions = {row["version"]: row for row in run_json(live, "room_versions")["versions"]}
    assert versions["5"]["flag"] == "old" and old in versions["5"]["room_ids"]
    assert versions["5"]["local_members"] >= 1 and versions["10"]["flag"] is None
    text = live.manage("room_versions")
    assert text.returncode == 0 and b"upgrade_room --all-below 6" in text.stdout

    plan = run_json(live, "upgrade_room", "--all-below", "6", "--version", "12", "--dry-run")["rooms"]
    mine = [p for p in plan if p["room_id"] == old]
    assert mine == [{"room_id": old, "from_version": "5", "to_version": "12", "upgrader": alice.user_id,
                     "refusal": None}]  # fmt: skip
    assert (
        alice.get(f"/rooms/{q(old)}/state/m.room.tombstone/", expect=404).status == 404
    )  # dry run: unchanged
    done = run_json(live, "upgrade_room", old, "--version", "12")["rooms"][0]
    new_room = done["new_room_id"]
    assert alice.get(f"/rooms/{q(old)}/state/m.room.tombstone/").json["replacement_room"] == new_room
    assert alice.get(f"/rooms/{q(new_room)}/state/m.room.create/").json.get("room_version") == "12"
    again = run_json(live, "upgrade_room", old, "--version", "12", "--dry-run")["rooms"][0]
    assert again["upgrader"] is None and "tombstone" in again["refusal"]
    bad = live.manage("upgrade_room", old, "--version", "99")
    assert bad.returncode != 0 and b"Unsupported room version" in bad.stderr

"""Server admins' room services against a real database: history purge with remote and local
events, deleting and blocking a room, the room list, room admin, forward extremities, and
both as admin jobs. (``manage.py runtests`` runs this module on PostgreSQL and on SQLite.)"""

from __future__ import annotations

import pytest
from django.conf import settings

from dagcore.actions import admin_jobs, purge_history, room_admin
from dagcore.actions.audit import Actor
from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.membership import check_join_room
from dagcore.actions.persist_event import persist_received_event, send_local_event
from dagcore.http.errors import MatrixError
from dagcore.models import AuditEntry, Event, Room, StateGroup, User
from dagcore.store import directory as directory_store
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from tests.support.events import RemoteServer
from tests.support.rooms import forward_extremities, remote_event

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db]

HOST = settings.SERVER_NAME
ALICE = f"@alice:{HOST}"
DAN = f"@dan:{HOST}"
BOB = "@bob:remote.test"
ADMIN = Actor(user_id=f"@root:{HOST}", via="api")


def _msg(room_id: str, sender: str = ALICE, body: str = "hi") -> str:
    return send_local_event(
        room_id=room_id,
        sender=sender,
        event_type="m.room.message",
        content={"msgtype": "m.text", "body": body},
    ).event.event_id


def _user(user_id: str) -> User:
    return User.objects.create(
        user_id=user_id, localpart=user_id[1:].split(":")[0], password_hash="", created_ts=0
    )


def _room_with_bob() -> tuple[str, RemoteServer, list[str], list[str]]:
    """A public room: alice (local) and bob (remote) talk; returns the local and remote message IDs."""
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11", preset="public_chat", name="mixed"))
    remote = RemoteServer("remote.test")
    persist_received_event(
        remote_event(remote, room_id, BOB, "m.room.member", {"membership": "join"}, state_key=BOB)
    )
    local, remote_ids = [], []
    for i in range(3):
        local.append(_msg(room_id, body=f"local {i}"))
        ev = remote_event(
            remote, room_id, BOB, "m.room.message", {"msgtype": "m.text", "body": f"remote {i}"}
        )
        persist_received_event(ev)
        remote_ids.append(ev.event_id)
    return room_id, remote, local, remote_ids


def test_a_purge_removes_remote_history_and_local_only_when_asked() -> None:
    room_id, remote, local, remote_ids = _room_with_bob()
    topic = remote_event(
        remote, room_id, BOB, "m.room.member", {"membership": "join", "displayname": "Bob"}, state_key=BOB
    )
    persist_received_event(topic)
    boundary = _msg(room_id, body="the boundary")
    _msg(room_id, body="latest")

    preview = purge_history.get_purge_preview(room_id=room_id, before_event_id=boundary)
    # Bob's messages go; the state before the boundary (the room's creation, bob's join and
    # his new name) and alice's messages leave the timeline but stay stored.
    assert preview.counts.events == len(remote_ids) and preview.counts.state_events >= 2
    assert preview.counts.local_events_kept == len(local)
    counts = purge_history.check_purge_history(preview=preview, actor=ADMIN)
    assert counts["events"] == len(remote_ids) and counts["state_events"] == preview.counts.state_events
    assert counts["local_events_kept"] == len(local) and counts["gaps"] >= 1
    assert not Event.objects.filter(event_id__in=remote_ids).exists()
    # Local users' events stay stored, out of the timeline (Synapse's default).
    assert Event.objects.filter(event_id__in=local, outlier=True).count() == len(local)
    # State events are kept (current state and auth need them), out of the timeline.
    assert Event.objects.get(event_id=topic.event_id).outlier
    assert purge_history.check_room_integrity(room_id=room_id) == []

    everything = purge_history.get_purge_preview(
        room_id=room_id, before_event_id=boundary, delete_local_events=True
    )
    assert everything.counts.events == len(local) and everything.counts.local_events_kept == 0
    assert purge_history.check_purge_history(preview=everything, actor=ADMIN)["events"] == len(local)
    assert purge_history.check_room_integrity(room_id=room_id) == []
    # The room still takes events from both sides.
    _msg(room_id, body="after")
    later = remote_event(remote, room_id, BOB, "m.room.message", {"msgtype": "m.text", "body": "still here"})
    assert persist_received_event(later).rejected_reason is None
    assert [e.action for e in AuditEntry.objects.order_by("id")] == ["purge_history", "purge_history"]


def test_a_purge_never_removes_more_than_its_preview_counted() -> None:
    room_id, remote, _local, _remote_ids = _room_with_bob()
    preview = purge_history.get_purge_preview(room_id=room_id, before_ts=2**62, delete_local_events=True)
    # Events arriving after the preview (remote and local) are outside its boundary.
    late_remote = remote_event(remote, room_id, BOB, "m.room.message", {"msgtype": "m.text", "body": "late"})
    persist_received_event(late_remote)
    late_local = _msg(room_id, body="late local")
    late_local_2 = _msg(room_id, body="late local 2")
    counts = purge_history.do_purge_history(boundary=preview.boundary)
    assert counts["events"] == preview.counts.events
    assert Event.objects.filter(event_id__in=[late_remote.event_id, late_local, late_local_2]).count() == 3
    assert purge_history.check_room_integrity(room_id=room_id) == []


def test_before_accepts_dates_durations_and_event_ids_and_refuses_the_rest() -> None:
    assert purge_history.parse_before("2026-11-01") == ("ts", 1793491200000)
    assert purge_history.parse_before("30d", now=100 * 86_400_000) == ("ts", 70 * 86_400_000)
    assert purge_history.parse_before("30 days ago", now=100 * 86_400_000) == ("ts", 70 * 86_400_000)
    assert purge_history.parse_before("$abc") == ("event", "$abc")
    for bad in ("", "soon", "30 parsecs"):
        with pytest.raises(MatrixError):
            purge_history.parse_before(bad)
    with pytest.raises(MatrixError) as unknown:
        purge_history.get_purge_preview(room_id="!nope:test", before_ts=1)
    assert unknown.value.status == 404
    room_a, _ = create_room(RoomSpec(creator=ALICE, room_version="11", preset="public_chat"))
    room_b, _ = create_room(RoomSpec(creator=ALICE, room_version="11", preset="public_chat"))
    with pytest.raises(MatrixError) as elsewhere:
        purge_history.get_purge_preview(room_id=room_a, before_event_id=_msg(room_b))
    assert elsewhere.value.status == 400
    with pytest.raises(MatrixError) as both:
        purge_history.get_purge_preview(room_id=room_a, before_ts=1, before_event_id="$x")
    assert both.value.status == 400


def test_the_server_notices_option_is_off_by_default_and_checked() -> None:
    from dagma_project.config import ConfigError, build_config

    assert build_config({"server_name": "example.com"}, env={}).server_notices is None
    on = build_config(
        {"server_name": "example.com", "server_notices": {"system_mxid_localpart": "notices"}}, env={}
    )
    assert on.server_notices == {"system_mxid_localpart": "notices"}
    for bad in ({"room_name": "x"}, {"system_mxid_localpart": "n", "colour": "red"}, "yes",
                {"system_mxid_localpart": "n", "auto_join": "yes"}):  # fmt: skip
        with pytest.raises(ConfigError) as err:
            build_config({"server_name": "example.com", "server_notices": bad}, env={})
        assert str(err.value).startswith("server_notices")


def test_a_purge_runs_as_an_admin_job_with_its_counts() -> None:
    room_id, _remote, _local, remote_ids = _room_with_bob()
    _msg(room_id, body="latest")
    preview = purge_history.get_purge_preview(room_id=room_id, before_ts=2**62)
    job = admin_jobs.do_start_job(kind="purge_history", target=room_id,
                                  params={"boundary": preview.boundary.as_json()}, actor=ADMIN)  # fmt: skip
    admin_jobs.do_run_admin_job(job.job_id)
    done = admin_jobs.get_job(job.job_id)
    assert done.status == "complete" and done.result["events"] == preview.counts.events == len(remote_ids)


def test_deleting_a_room_moves_local_members_to_a_replacement_room_blocks_and_purges_it() -> None:
    room_id, _remote, _local, _remote_ids = _room_with_bob()
    alice, dan = _user(ALICE), _user(DAN)
    check_join_room(user=dan, room_id_or_alias=room_id)
    directory_store.insert_alias(alias=f"#bad:{HOST}", room_id=room_id, creator=ALICE)
    request = room_admin.parse_delete_room(room_id, {
        "new_room_user_id": f"@notices:{HOST}", "room_name": "Gone", "message": "This room broke the rules",
        "block": True, "purge": True,
    })  # fmt: skip
    job = admin_jobs.do_start_job(kind="delete_room", target=room_id, params={**request.as_json(), "via": "api"},
                                  actor=ADMIN)  # fmt: skip
    admin_jobs.do_run_admin_job(job.job_id)
    status = room_admin.delete_status_json(admin_jobs.get_job(job.job_id))
    assert status["status"] == "complete" and status["room_id"] == room_id
    shutdown = status["shutdown_room"]
    assert sorted(shutdown["kicked_users"]) == [ALICE, DAN] and shutdown["failed_to_kick_users"] == []
    assert shutdown["local_aliases"] == [f"#bad:{HOST}"]
    new_room = shutdown["new_room_id"]
    # The old room is gone from the database; its members and alias are in the new one with the message.
    assert room_store.get_room(room_id) is None and not Event.objects.filter(room__room_id=room_id).exists()
    assert directory_store.get_alias(f"#bad:{HOST}").room_id == new_room  # type: ignore[union-attr]
    assert sorted(room_admin.get_room_members(new_room)["members"]) == [ALICE, DAN, f"@notices:{HOST}"]
    bodies = [e.content.get("body") for e in (s.event for s in event_store.get_events_by_ids(
        Event.objects.filter(room__room_id=new_room, type="m.room.message").values_list("event_id", flat=True)
    ).values())]  # fmt: skip
    assert bodies == ["This room broke the rules"]
    # Blocked: local users may not come back.
    assert room_admin.get_block_status(room_id) == {"block": True, "user_id": ADMIN.user_id}
    with pytest.raises(MatrixError) as refused:
        check_join_room(user=alice, room_id_or_alias=room_id)
    assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")
    assert not StateGroup.objects.filter(room__room_id=room_id).exists()


def test_a_room_can_be_blocked_before_it_is_known_and_unblocked() -> None:
    unknown = f"!future:{HOST}"
    assert room_admin.get_block_status(unknown) == {"block": False}
    assert room_admin.check_set_block(room_id=unknown, block=True, actor=ADMIN) == {"block": True}
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11", preset="public_chat"))
    room_admin.check_set_block(room_id=room_id, block=True, actor=ADMIN)
    dan = _user(DAN)
    with pytest.raises(MatrixError):
        check_join_room(user=dan, room_id_or_alias=room_id)
    room_admin.check_set_block(room_id=room_id, block=False, actor=ADMIN)
    assert check_join_room(user=dan, room_id_or_alias=room_id) == room_id
    for bad in ("not a room", 5):
        with pytest.raises(MatrixError):
            room_admin.check_set_block(room_id=room_id if bad == 5 else bad, block=bad, actor=ADMIN)  # type: ignore[arg-type]
    # Deleting an unknown room without blocking it is refused; with block it only blocks.
    with pytest.raises(MatrixError):
        room_admin.parse_delete_room(f"!other:{HOST}", {})
    blocked_only = room_admin.do_delete_room(
        room_admin.parse_delete_room(f"!other:{HOST}", {"block": True}), actor=ADMIN
    )
    assert (
        blocked_only["kicked_users"] == [] and room_admin.get_block_status(f"!other:{HOST}")["block"] is True
    )


def test_a_room_whose_local_members_could_not_be_removed_is_purged_only_with_force_purge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11", preset="public_chat"))

    def refused_leave(room_id: str, user_id: str) -> None:
        raise MatrixError(403, "M_FORBIDDEN", "the leave was refused")

    # A member the server fails to remove (what a refused leave looks like to the deletion).
    monkeypatch.setattr(room_admin, "_leave", refused_leave)
    with pytest.raises(MatrixError) as refused:
        room_admin.do_delete_room(room_admin.DeleteRoomRequest(room_id=room_id), actor=ADMIN)
    assert "still joined" in refused.value.error and room_store.get_room(room_id) is not None
    assert AuditEntry.objects.filter(action="delete_room", result="failed").count() == 1
    shutdown = room_admin.do_delete_room(
        room_admin.DeleteRoomRequest(room_id=room_id, force_purge=True), actor=ADMIN
    )
    assert shutdown["failed_to_kick_users"] == [ALICE] and room_store.get_room(room_id) is None


def test_the_room_list_pages_orders_and_searches_as_synapse() -> None:
    ids = []
    for i, name in enumerate(["Charlie", "alpha", "Bravo"]):
        room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11", preset="public_chat", name=name))
        for j in range(i):
            check_join_room(user=_user(f"@m{i}{j}:{HOST}"), room_id_or_alias=room_id)
        ids.append(room_id)
    everything = room_admin.list_rooms({})
    assert [r["name"] for r in everything["rooms"]] == ["Bravo", "Charlie", "alpha"]  # as Synapse: byte order
    assert everything["total_rooms"] == 3 and everything["offset"] == 0 and "next_batch" not in everything
    first = room_admin.list_rooms({"limit": "2", "order_by": "joined_members"})
    assert [r["joined_members"] for r in first["rooms"]] == [3, 2] and first["next_batch"] == 2
    second = room_admin.list_rooms({"limit": "2", "from": "2", "order_by": "joined_members"})
    assert [r["joined_members"] for r in second["rooms"]] == [1] and second["prev_batch"] == 0
    assert [
        r["joined_local_members"] for r in room_admin.list_rooms({"order_by": "size", "dir": "b"})["rooms"]
    ] == [1, 2, 3]
    assert [r["name"] for r in room_admin.list_rooms({"search_term": "ALPH"})["rooms"]] == ["alpha"]
    assert room_admin.list_rooms({"search_term": ids[0]})["rooms"][0]["room_id"] == ids[0]
    summary = everything["rooms"][0]
    assert summary["version"] == "11" and summary["creator"] == ALICE and summary["join_rules"] == "public"
    assert summary["encryption"] is None and summary["federatable"] is True and summary["state_events"] >= 5
    for bad in ({"order_by": "nonsense"}, {"dir": "x"}, {"limit": "-1"}, {"from": "x"}):
        with pytest.raises(MatrixError) as err:
            room_admin.list_rooms(bad)
        assert err.value.status == 400
    details = room_admin.get_room_details(ids[2])
    assert details["name"] == "Bravo" and details["joined_members"] == 3 and details["forgotten"] is False
    assert any(e["type"] == "m.room.create" for e in room_admin.get_room_state(ids[2]))
    assert [e["type"] for e in room_admin.get_room_state(ids[2], event_type="m.room.name")] == ["m.room.name"]
    with pytest.raises(MatrixError):
        room_admin.get_room_details(f"!nope:{HOST}")


def test_make_room_admin_gives_the_highest_local_power_and_invites_to_a_private_room() -> None:
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11", preset="private_chat"))
    room_admin.check_make_room_admin(room_id_or_alias=room_id, user_id=None, admin_user_id=DAN, actor=ADMIN)
    room = room_store.get_room(room_id)
    assert room is not None
    from dagcore.store import state as state_store

    state = state_store.get_current_state_events(room)
    assert state[("m.room.power_levels", "")].content["users"][DAN] == 100
    assert state[("m.room.member", DAN)].membership == "invite"
    with pytest.raises(MatrixError):
        room_admin.check_make_room_admin(
            room_id_or_alias=room_id, user_id="@x:elsewhere", admin_user_id=DAN, actor=ADMIN
        )


def test_dropping_forward_extremities_keeps_the_newest() -> None:
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11", preset="public_chat"))
    remote = RemoteServer("remote.test")
    persist_received_event(
        remote_event(remote, room_id, BOB, "m.room.member", {"membership": "join"}, state_key=BOB)
    )
    base = forward_extremities(room_id)
    forks = []
    for body in ("a", "b", "c"):
        ev = remote_event(
            remote, room_id, BOB, "m.room.message", {"msgtype": "m.text", "body": body}, prev=base
        )
        persist_received_event(ev)
        forks.append(ev.event_id)
    listed = room_admin.get_forward_extremities_json(room_id)
    assert listed["count"] == 3 and {r["event_id"] for r in listed["results"]} == set(forks)
    assert all(r["depth"] > 0 and r["received_ts"] > 0 for r in listed["results"])
    assert room_admin.check_delete_forward_extremities(room_id_or_alias=room_id, actor=ADMIN) == {
        "deleted": 2
    }
    assert forward_extremities(room_id) == [forks[-1]]
    assert room_admin.check_delete_forward_extremities(room_id_or_alias=room_id, actor=ADMIN) == {
        "deleted": 0
    }
    following = _msg(room_id)
    stored = event_store.get_event_by_id(following)
    assert stored is not None and list(stored.event.prev_event_ids) == [forks[-1]]
    assert Room.objects.get(room_id=room_id).forward_extremity_count == 1

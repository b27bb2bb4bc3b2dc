"""``manage.py dag check / repair / forks``: one corruption of the database per finding, made
directly in SQL as a bug or a crash would leave it; ``dag check`` names it, ``dag repair``
(a dry run, then ``--apply``) fixes it, and ``dag check`` is clean afterwards.

Marked ``sqlite``: ``manage.py runtests`` runs this module on PostgreSQL and again on SQLite.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.persist_event import persist_received_event, send_local_event
from dagcore.cli import check, forks, repair, resolve
from dagcore.models import AuditEntry, CheckResult, DagRepair
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from tests.support.events import RemoteServer
from tests.support.rooms import current_state_ids, forward_extremities, remote_event

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]

ALICE = f"@alice:{settings.SERVER_NAME}"
BOB = "@bob:remote.test"


def _run(module: Any, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    code = module.run(parser.parse_args(list(argv)))
    out, err = capsys.readouterr()
    return code, out, err


def _check(capsys: pytest.CaptureFixture[str], room_id: str) -> tuple[int, dict[str, Any]]:
    code, out, err = _run(check, capsys, room_id, "--json")
    assert code in (0, 1, 2), err
    return code, json.loads(out)


def _codes(report: dict[str, Any]) -> set[str]:
    return {f["code"] for r in report["rooms"] for f in r["findings"]}


def _sql(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])


def _nid(event_id: str) -> int:
    stored = event_store.get_event_by_id(event_id)
    assert stored is not None
    return stored.nid


def _msg(room_id: str, body: str = "hi", sender: str = ALICE) -> str:
    return send_local_event(
        room_id=room_id,
        sender=sender,
        event_type="m.room.message",
        content={"msgtype": "m.text", "body": body},
    ).event.event_id


def _state(room_id: str, event_type: str, content: dict[str, Any]) -> str:
    return send_local_event(
        room_id=room_id, sender=ALICE, event_type=event_type, content=content, state_key=""
    ).event.event_id


@pytest.fixture
def room() -> Iterator[dict[str, Any]]:
    """A public room with a remote member (bob), a topic change and a few messages."""
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11", preset="public_chat", name="doctor"))
    remote = RemoteServer("remote.test")
    join = remote_event(remote, room_id, BOB, "m.room.member", {"membership": "join"}, state_key=BOB)
    persist_received_event(join)
    topic1 = _state(room_id, "m.room.topic", {"topic": "one"})
    first = _msg(room_id, "first")
    bob_msg = remote_event(remote, room_id, BOB, "m.room.message", {"msgtype": "m.text", "body": "bob"})
    persist_received_event(bob_msg)
    middle = _msg(room_id, "middle")
    topic2 = _state(room_id, "m.room.topic", {"topic": "two"})
    last = _msg(room_id, "last")
    yield {
        "room_id": room_id, "remote": remote, "bob_join": join.event_id, "topic1": topic1, "first": first,
        "bob_msg": bob_msg.event_id, "middle": middle, "topic2": topic2, "last": last,
    }  # fmt: skip


def _repair_and_recheck(capsys: pytest.CaptureFixture[str], room_id: str) -> dict[str, Any]:
    """Dry run (nothing changes), then --apply; the room checks clean afterwards."""
    before = _check(capsys, room_id)[1]
    code, out, err = _run(repair, capsys, room_id)
    assert code == 0, out + err
    assert "dry run" in out and "--apply" in out
    assert (
        _check(capsys, room_id)[1]["rooms"][0]["findings"] == before["rooms"][0]["findings"]
    )  # nothing changed
    code, out, err = _run(repair, capsys, room_id, "--apply", "--json")
    assert code == 0, out + err
    applied = json.loads(out)
    assert applied["check_after"]["status"] == "ok", applied["check_after"]
    code, report = _check(capsys, room_id)
    assert code == 0 and report["status"] == "ok", report
    assert AuditEntry.objects.filter(action="dag_repair", target=room_id, result="ok", via="cli").exists()
    assert AuditEntry.objects.filter(action="dag_repair", target=room_id, result="dry-run").exists()
    # The room still takes events, on a clean single head.
    _msg(room_id, "after the repair")
    assert _check(capsys, room_id)[0] == 0
    return applied


def test_a_healthy_room_checks_clean_and_the_outcome_is_recorded(capsys, room) -> None:
    code, report = _check(capsys, room["room_id"])
    assert code == 0 and report["status"] == "ok" and _codes(report) == set()
    result = CheckResult.objects.filter(name="dag_check").latest("id")
    assert result.status == "ok"
    code, out, _ = _run(check, capsys, "--all")
    assert code == 0 and "no problems" in out
    code, out, _ = _run(repair, capsys, room["room_id"])
    assert code == 0 and "nothing to change" in out
    code, out, _ = _run(repair, capsys, room["room_id"], "--apply", "--json")
    assert code == 0 and json.loads(out)["repair_id"] is None  # no change, no undo record
    assert not DagRepair.objects.exists()


def test_bad_input_exits_2_with_one_line(capsys) -> None:
    for module, argv in ((check, ["!nope:x"]), (check, []), (repair, ["!nope:x"]), (forks, ["!nope:x"]),
                         (repair, ["--undo", "999999"])):  # fmt: skip
        code, out, err = _run(module, capsys, *argv)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (argv, out, err)


def test_an_event_without_state_is_found_and_its_state_recomputed(capsys, room) -> None:
    _sql(
        "UPDATE events SET state_group = NULL, state_group_before = NULL WHERE id = %s",
        [_nid(room["middle"])],
    )
    code, report = _check(capsys, room["room_id"])
    assert code == 2 and "event_without_state" in _codes(report)
    code, out, _ = _run(check, capsys, room["room_id"])  # readable
    assert code == 2 and "[fail] event_without_state" in out and room["middle"] in out
    assert "manage.py dag repair ROOM" in out
    applied = _repair_and_recheck(capsys, room["room_id"])
    assert room["middle"] in [c["event_id"] for c in applied["plan"]["state_changes"]]
    stored = event_store.get_event_by_id(room["middle"])
    assert stored is not None and stored.state_group is not None


def test_an_event_naming_a_state_group_that_does_not_exist_gets_its_state_recomputed(capsys, room) -> None:
    _sql("UPDATE events SET state_group = 987654321 WHERE id = %s", [_nid(room["topic1"])])
    code, report = _check(capsys, room["room_id"])
    assert code == 2 and "unknown_state_group" in _codes(report)
    _repair_and_recheck(capsys, room["room_id"])
    stored = event_store.get_event_by_id(room["topic1"])
    assert stored is not None and stored.state_group != 987654321


def test_a_wrong_state_before_an_event_is_a_state_mismatch_and_is_recomputed(capsys, room) -> None:
    create_group = event_store.get_event_by_id(current_state_ids(room["room_id"])[("m.room.create", "")])
    assert create_group is not None
    _sql(
        "UPDATE events SET state_group_before = %s, state_group = %s WHERE id = %s",
        [create_group.state_group, create_group.state_group, _nid(room["first"])],
    )
    code, report = _check(capsys, room["room_id"])
    assert code == 2 and "state_mismatch" in _codes(report)
    _repair_and_recheck(capsys, room["room_id"])


def test_state_naming_another_rooms_event_is_found_and_replaced(capsys, room) -> None:
    other_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11", preset="private_chat", name="other"))
    other_topic = _state(other_id, "m.room.topic", {"topic": "from another room"})
    stored = event_store.get_event_by_id(room["topic2"])
    assert stored is not None and stored.state_group is not None
    # Synapse #7012: the room's state names another room's event.
    _sql(
        "UPDATE state_group_entries SET event_nid = %s WHERE group_id = %s AND type = 'm.room.topic'",
        [_nid(other_topic), stored.state_group],
    )
    _sql(
        "UPDATE current_state_events SET event_id = %s WHERE room_id = %s AND type = 'm.room.topic'",
        [_nid(other_topic), room_store.get_room(room["room_id"]).pk],  # type: ignore[union-attr]
    )
    code, report = _check(capsys, room["room_id"])
    assert code == 2 and {"foreign_state", "current_state_mismatch"} <= _codes(report)
    foreign = next(f for f in report["rooms"][0]["findings"] if f["code"] == "foreign_state")
    assert other_topic in foreign["event_ids"] and {d["kind"] for d in foreign["details"]} == {"foreign"}
    _repair_and_recheck(capsys, room["room_id"])
    assert current_state_ids(room["room_id"])[("m.room.topic", "")] == room["topic2"]
    assert _check(capsys, other_id)[0] == 0  # the other room was never touched


def test_current_state_differing_from_the_extremities_resolution_is_rewritten(capsys, room) -> None:
    room_nid = room_store.get_room(room["room_id"]).pk  # type: ignore[union-attr]
    _sql(
        "UPDATE current_state_events SET event_id = %s WHERE room_id = %s AND type = 'm.room.topic'",
        [_nid(room["topic1"]), room_nid],
    )
    _sql("DELETE FROM current_state_events WHERE room_id = %s AND type = 'm.room.name'", [room_nid])
    code, report = _check(capsys, room["room_id"])
    assert code == 2 and "current_state_mismatch" in _codes(report)
    code, out, _ = _run(repair, capsys, room["room_id"])
    assert "change current state in 2 key(s)" in out and f"{room['topic1']} -> {room['topic2']}" in out
    _repair_and_recheck(capsys, room["room_id"])
    state = current_state_ids(room["room_id"])
    assert state[("m.room.topic", "")] == room["topic2"] and ("m.room.name", "") in state


def test_stale_and_missing_forward_extremities_are_rebuilt(capsys, room) -> None:
    r = room_store.get_room(room["room_id"])
    assert r is not None
    old = event_store.get_event_by_id(room["first"])
    assert old is not None
    # A crash left an old event (with children) listed and the real head missing.
    _sql(
        "UPDATE rooms SET forward_extremities = %s, forward_extremity_count = 1 WHERE id = %s",
        [json.dumps([[old.nid, old.event_id, old.depth, old.state_group]]), r.pk],
    )
    code, report = _check(capsys, room["room_id"])
    assert code == 2 and {"stale_extremities", "missing_extremities"} <= _codes(report)
    _repair_and_recheck(capsys, room["room_id"])


def _lose_event(event_id: str) -> None:
    """The event's rows are gone (its edges with it), as a botched purge leaves it."""
    nid = _nid(event_id)
    _sql("DELETE FROM event_edges WHERE event_id = %s", [nid])
    _sql("DELETE FROM event_auth_edges WHERE event_id = %s", [nid])
    _sql("DELETE FROM federation_outbox WHERE event_id = %s", [nid])
    _sql("DELETE FROM events WHERE id = %s", [nid])


def test_a_missing_prev_event_is_recorded_as_a_gap_when_no_server_has_it(capsys, room) -> None:
    _lose_event(room["middle"])
    code, report = _check(capsys, room["room_id"])
    # Its own prev event (bob's message) has no known child any more; being older than the
    # gap, it need not head the room (as after a remote join), so it is no missing extremity.
    assert code == 1 and _codes(report) == {"missing_prev_events"}
    finding = report["rooms"][0]["findings"][0]
    assert finding["event_ids"] == [room["middle"]] and finding["severity"] == "warn"
    code, out, _ = _run(repair, capsys, room["room_id"])
    assert "record 1 gap(s)" in out
    _repair_and_recheck(capsys, room["room_id"])
    r = room_store.get_room(room["room_id"])
    from dagcore.store.backfill import get_gaps

    assert [g.event_id for g in get_gaps(r, [room["middle"]])] == [room["middle"]]  # type: ignore[arg-type]


def test_a_missing_auth_event_without_a_server_to_ask_is_declared_unfixable(capsys, room) -> None:
    _sql(
        "INSERT INTO event_auth_edges (event_id, auth_event_id) VALUES (%s, %s)",
        [_nid(room["bob_msg"]), "$lost-auth-event"],
    )
    code, report = _check(capsys, room["room_id"])
    assert code == 2 and _codes(report) == {"missing_auth_events"}
    code, out, _ = _run(repair, capsys, room["room_id"])
    assert code == 0 and "would fetch from remote.test" in out and "$lost-auth-event" in out
    # remote.test does not exist: nobody gives us the event.
    code, out, _ = _run(repair, capsys, room["room_id"], "--apply")
    assert code == 1 and "NOT FIXABLE" in out and "upgrade_room" in out and "--from-server" in out
    assert AuditEntry.objects.filter(action="dag_repair", target=room["room_id"]).exists()
    assert _check(capsys, room["room_id"])[0] == 2


def test_an_accepted_event_citing_a_rejected_auth_event_is_rejected_with_its_reason(capsys, room) -> None:
    # bob's join marked rejected (say by a fixed bug): his message, accepted on it, must be rejected too.
    _sql("UPDATE events SET rejected_reason = 'auth events: test' WHERE id = %s", [_nid(room["bob_join"])])
    code, report = _check(capsys, room["room_id"])
    assert code == 2 and "rejected_auth_events" in _codes(report)
    code, out, _ = _run(repair, capsys, room["room_id"])
    assert f"reject {room['bob_msg']}: auth events: auth event {room['bob_join']} was rejected" in out
    applied = _repair_and_recheck(capsys, room["room_id"])
    assert room["bob_msg"] in applied["plan"]["reject"]
    bob_msg = event_store.get_event_by_id(room["bob_msg"])
    assert bob_msg is not None and bob_msg.rejected_reason is not None and bob_msg.stream_ordering is None
    assert ("m.room.member", BOB) not in current_state_ids(room["room_id"])
    assert room_store.get_membership(room_store.get_room(room["room_id"]), BOB) is None  # type: ignore[arg-type]


def test_membership_rows_disagreeing_with_state_are_rewritten(capsys, room) -> None:
    r = room_store.get_room(room["room_id"])
    assert r is not None
    _sql(
        "UPDATE room_memberships SET membership = 'leave' WHERE room_id = %s AND user_id = %s", [r.pk, ALICE]
    )
    _sql(
        "UPDATE room_servers SET joined_count = 7 WHERE room_id = %s AND server_name = 'remote.test'", [r.pk]
    )
    code, report = _check(capsys, room["room_id"])
    assert code == 2 and _codes(report) == {"membership_mismatch"}
    _repair_and_recheck(capsys, room["room_id"])
    member = room_store.get_membership(r, ALICE)
    assert member is not None and member.membership == "join"
    assert "remote.test" in room_store.get_joined_servers(r)


def _fork(room: dict[str, Any], branches: int) -> list[str]:
    """``branches`` concurrent events of bob's on the same prev event (as a netsplit leaves them)."""
    room_id = room["room_id"]
    fork_point = forward_extremities(room_id)
    state = current_state_ids(room_id)
    made = []
    for i in range(branches):
        event = remote_event(
            room["remote"], room_id, BOB, "m.room.message", {"msgtype": "m.text", "body": f"branch {i}"},
            prev=fork_point, state=state,
        )  # fmt: skip
        persist_received_event(event)
        made.append(event.event_id)
    return made


def test_too_many_extremities_warn_and_a_dummy_event_merges_them(capsys, room) -> None:
    branches = _fork(room, 12)
    assert sorted(forward_extremities(room["room_id"])) == sorted(branches)
    code, report = _check(capsys, room["room_id"])
    assert code == 1 and _codes(report) == {"too_many_extremities"}
    code, out, _ = _run(repair, capsys, room["room_id"])
    assert f"send an org.matrix.dummy_event as {ALICE} to merge 12 forward extremities" in out
    applied = _repair_and_recheck(capsys, room["room_id"])
    dummy = event_store.get_event_by_id(applied["dummy_event_id"])
    assert dummy is not None and dummy.event.type == "org.matrix.dummy_event"
    assert sorted(dummy.event.prev_event_ids) == sorted(branches)


def test_extremities_an_operator_dropped_are_neither_missing_nor_put_back(capsys, room) -> None:
    """The admin API's ``DELETE .../forward_extremities`` (Synapse's semantics) abandons every
    branch but the newest: those events stay childless for good. ``dag check`` must not call
    them missing extremities, and ``dag repair`` must not list them again (undoing the drop)."""
    from dagcore.actions import room_admin
    from dagcore.actions.audit import Actor

    branches = _fork(room, 3)
    actor = Actor(user_id="@admin:" + settings.SERVER_NAME, via="api")
    assert room_admin.check_delete_forward_extremities(room_id_or_alias=room["room_id"], actor=actor) == {
        "deleted": 2
    }
    kept = forward_extremities(room["room_id"])
    assert len(kept) == 1 and kept[0] in branches
    code, report = _check(capsys, room["room_id"])
    assert code == 0 and report["status"] == "ok", report
    code, out, err = _run(repair, capsys, room["room_id"], "--apply", "--json")
    assert code == 0, out + err
    assert forward_extremities(room["room_id"]) == kept
    # The room goes on from the kept branch; the dropped ones are still not expected.
    following = _msg(room["room_id"], "after the drop")
    assert forward_extremities(room["room_id"]) == [following]
    assert _check(capsys, room["room_id"])[0] == 0
    # A branch someone builds on again is a plain part of the DAG: its child heads the room.
    dropped = next(b for b in branches if b not in kept)
    state = current_state_ids(room["room_id"])
    revived = remote_event(
        room["remote"], room["room_id"], BOB, "m.room.message", {"msgtype": "m.text", "body": "revived"},
        prev=[dropped], state=state,
    )  # fmt: skip
    persist_received_event(revived)
    assert sorted(forward_extremities(room["room_id"])) == sorted([following, revived.event_id])
    assert _check(capsys, room["room_id"])[0] == 0


def test_the_beat_job_merges_a_room_over_ten_extremities_and_leaves_the_others(room) -> None:
    """Beat "merge-extremities": a dummy event by a local member cites every branch (Synapse's
    dummy events); a room at or under 10 is left alone; an audit entry per merge."""
    from dagcore.actions.extremities import do_merge_extremities

    quiet_room, _ = create_room(
        RoomSpec(creator=ALICE, room_version="11", preset="public_chat", name="quiet")
    )
    quiet_before = forward_extremities(quiet_room)
    branches = _fork(room, 12)
    assert do_merge_extremities() == 1
    (merged,) = forward_extremities(room["room_id"])
    dummy = event_store.get_event_by_id(merged)
    assert dummy is not None and dummy.event.type == "org.matrix.dummy_event" and dummy.event.sender == ALICE
    assert sorted(dummy.event.prev_event_ids) == sorted(branches)
    assert forward_extremities(quiet_room) == quiet_before
    assert AuditEntry.objects.filter(action="extremities.merge", target=room["room_id"]).count() == 1
    assert do_merge_extremities() == 0  # nothing left to merge


def test_a_repair_is_undone_by_its_record(capsys, room) -> None:
    r = room_store.get_room(room["room_id"])
    assert r is not None
    _sql(
        "UPDATE room_memberships SET membership = 'leave' WHERE room_id = %s AND user_id = %s", [r.pk, ALICE]
    )
    code, out, _ = _run(repair, capsys, room["room_id"], "--apply", "--json")
    repair_id = json.loads(out)["repair_id"]
    assert DagRepair.objects.filter(id=repair_id, room_id=room["room_id"]).exists()
    code, out, err = _run(repair, capsys, "--undo", str(repair_id))
    assert code == 0, err
    assert room_store.get_membership(r, ALICE).membership == "leave"  # type: ignore[union-attr]
    assert AuditEntry.objects.filter(action="dag_repair_undo", target=room["room_id"]).exists()
    code, out, err = _run(repair, capsys, "--undo", str(repair_id))
    assert code == 2 and "undone already" in err


def test_forks_explains_the_resolution_and_its_input_reproduces_it_offline(
    capsys, room, tmp_path: Path
) -> None:
    room_id = room["room_id"]
    fork_point = forward_extremities(room_id)
    state = current_state_ids(room_id)
    # Concurrent topic changes by alice (ours, power 100) and bob (remote, power 0: refused by the rules).
    remote = room["remote"]
    alice_topic = remote_event(remote, room_id, ALICE, "m.room.topic", {"topic": "alice"}, state_key="",
                               prev=fork_point, state=state)  # fmt: skip
    bob_topic = remote_event(remote, room_id, BOB, "m.room.topic", {"topic": "bob"}, state_key="",
                             prev=fork_point, state=state)  # fmt: skip
    persist_received_event(alice_topic)
    persist_received_event(bob_topic)
    code, out, _ = _run(forks, capsys, room_id)
    assert code == 0 and "no fork" in out  # bob's topic was rejected: it heads nothing
    branches = _fork(room, 2)
    saved = tmp_path / "resolve.json"
    code, out, _ = _run(forks, capsys, room_id, "--explain", "--save", str(saved))
    assert code == 0
    for branch in branches:
        assert branch in out
    assert "Resolution (as `manage.py dag resolve FILE --explain` prints it)" in out
    code, resolved_out, explain = _run(resolve, capsys, str(saved), "--explain")
    assert code == 0
    # The offline resolution says, line for line, what `dag forks --explain` said.
    assert all(line in out for line in explain.strip().splitlines())
    resolved = {(t, s): e for t, s, e in json.loads(resolved_out)["state"]}
    assert resolved == current_state_ids(room_id)
    code, out, _ = _run(forks, capsys, room_id, "--json")
    report = json.loads(out)
    assert report["forked"] and len(report["forward_extremities"]) == 2
    assert report["differences_from_current_state"] == []

"""``manage.py dag auth-check FILE``: verdicts, and exit code 2 on bad input."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dagcore.cli import auth_check
from dagcore.protocol.auth_rules.tests.builder import ALICE, ALL_VERSIONS, BOB, CAROL, Room, standard_room
from dagcore.protocol.events import Event

REPO = Path(__file__).resolve().parents[2]


def pdu(event: Event) -> dict[str, Any]:
    return {**event.pdu, "event_id": event.event_id}


def case(room: Room, event: Event, *, with_state: bool = False) -> dict[str, Any]:
    auth = [pdu(room.events[i]) for i in event.auth_event_ids]
    if room.version.room_id_is_create_event_hash:
        auth.append(pdu(room.create))
    data: dict[str, Any] = {"room_version": room.version.identifier, "event": pdu(event), "auth_events": auth}
    if with_state:
        data["state"] = [[t, k, e.event_id] for (t, k), e in room.state.items()]
        data["events"] = [pdu(e) for e in room.state.values()]
    return data


def run_cli(tmp_path: Path, data: Any, capsys) -> tuple[int, str, str]:
    path = tmp_path / "case.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    parser = argparse.ArgumentParser()
    auth_check.add_arguments(parser)
    code = auth_check.run(parser.parse_args([str(path)]))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_an_allowed_event_is_reported_allowed(version, tmp_path, capsys):
    room = standard_room(version)
    event = room.make("m.room.member", BOB, {"membership": "join"}, state_key=BOB)
    code, out, _ = run_cli(tmp_path, case(room, event, with_state=True), capsys)
    assert code == 0
    assert json.loads(out)["allowed"] is True


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_a_forbidden_event_is_reported_with_the_failing_rule(version, tmp_path, capsys):
    room = standard_room(version, join_rule="invite")
    event = room.make("m.room.member", BOB, {"membership": "join"}, state_key=BOB)
    code, out, _ = run_cli(tmp_path, case(room, event), capsys)
    verdict = json.loads(out)
    assert code == 0
    assert verdict["allowed"] is False
    assert "not invited" in verdict["reason"]


def test_the_state_before_the_event_can_forbid_what_the_auth_events_allow(tmp_path, capsys):
    room = standard_room("10")
    room.join(BOB)
    event = room.make("m.room.message", BOB, {"body": "x"})
    room.member(ALICE, BOB, "ban")
    data = case(room, event, with_state=True)
    data["auth_events"] = [pdu(room.events[i]) for i in event.auth_event_ids]
    code, out, _ = run_cli(tmp_path, data, capsys)
    assert code == 0
    verdict = json.loads(out)
    assert verdict == {"allowed": False, "reason": "state: the sender is not joined to the room"}
    del data["state"]
    _, out, _ = run_cli(tmp_path, data, capsys)
    assert json.loads(out)["allowed"] is True


def test_the_auth_events_list_rules_are_applied(tmp_path, capsys):
    room = standard_room("10")
    event = room.make("m.room.message", ALICE, {"body": "x"})
    data = case(room, event)
    extra = room.state[("m.room.join_rules", "")]
    data["event"]["auth_events"].append(extra.event_id)
    data["auth_events"].append(pdu(extra))
    _, out, _ = run_cli(tmp_path, data, capsys)
    assert "not selected" in json.loads(out)["reason"]


def test_rejected_auth_events_can_be_marked(tmp_path, capsys):
    room = standard_room("10")
    event = room.make("m.room.message", ALICE, {"body": "x"})
    data = case(room, event)
    data["rejected"] = [room.state[("m.room.power_levels", "")].event_id]
    _, out, _ = run_cli(tmp_path, data, capsys)
    assert "was rejected" in json.loads(out)["reason"]


def test_a_create_event_is_checked_on_its_own(tmp_path, capsys):
    room = Room("12")
    _, out, _ = run_cli(tmp_path, case(room, room.create), capsys)
    assert json.loads(out)["allowed"] is True


def test_v12_creator_power_is_visible_through_the_cli(tmp_path, capsys):
    room = standard_room("12", users={CAROL: 100})
    room.join(CAROL)
    event = room.make("m.room.power_levels", ALICE, {"users": {ALICE: 100, CAROL: 100}}, state_key="")
    _, out, _ = run_cli(tmp_path, case(room, event, with_state=True), capsys)
    verdict = json.loads(out)
    assert verdict["allowed"] is False and "creators" in verdict["reason"]


@pytest.mark.parametrize("with_state", [False, True])
def test_a_v12_event_whose_implied_create_event_is_not_given_is_not_allowed(with_state, tmp_path, capsys):
    """The room ID names the create event (v12): without it nothing can authorise the event."""
    room = standard_room("12")
    event = room.make("m.room.message", ALICE, {"body": "x"})
    data = case(room, event, with_state=with_state)
    create_id = room.create.event_id
    data["auth_events"] = [e for e in data["auth_events"] if e["event_id"] != create_id]
    if with_state:
        data["events"] = [e for e in data["events"] if e["event_id"] != create_id]
        data["state"] = [entry for entry in data["state"] if entry[2] != create_id]
    code, out, err = run_cli(tmp_path, data, capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "allowed": False,
        "reason": f"auth events: the create event {create_id} implied by the room ID is not given",
    }
    # Control: the same file with the create event is allowed.
    _, out, _ = run_cli(tmp_path, case(room, event, with_state=with_state), capsys)
    assert json.loads(out)["allowed"] is True


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_an_event_whose_auth_event_is_not_given_is_not_allowed(version, tmp_path, capsys):
    room = standard_room(version)
    event = room.make("m.room.message", ALICE, {"body": "x"})
    data = case(room, event)
    power_levels = room.state[("m.room.power_levels", "")].event_id
    assert power_levels in event.auth_event_ids
    data["auth_events"] = [e for e in data["auth_events"] if e["event_id"] != power_levels]
    code, out, err = run_cli(tmp_path, data, capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "allowed": False,
        "reason": f"auth events: auth event {power_levels} is not given",
    }


def test_a_malformed_file_exits_2_even_when_an_auth_event_is_missing(tmp_path, capsys):
    room = standard_room("12")
    event = room.make("m.room.message", ALICE, {"body": "x"})
    data = case(room, event)
    data["auth_events"] = [e for e in data["auth_events"] if e["event_id"] != room.create.event_id]
    data["state"] = [["m.room.topic", "", "$nope"]]
    code, out, err = run_cli(tmp_path, data, capsys)
    assert (code, out) == (2, "")
    assert "state event $nope is not given" in err


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: "not json {", "not valid JSON"),
        (lambda d: {**d, "room_version": "99"}, "unknown room version"),
        (lambda d: {**d, "state": [["m.room.topic", "", "$nope"]]}, "is not given"),
        (lambda d: {**d, "event": {k: v for k, v in d["event"].items() if k != "event_id"}}, "no event_id"),
        (lambda d: {k: v for k, v in d.items() if k != "event"}, "missing 'event'"),
        (lambda d: {**d, "state": [["m.room.topic", ""]]}, "state entries"),
    ],
)
def test_bad_input_exits_2_with_one_line_on_stderr(mutate, message, tmp_path, capsys):
    room = standard_room("12")
    event = room.make("m.room.message", ALICE, {"body": "x"})
    code, out, err = run_cli(tmp_path, mutate(case(room, event)), capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err


def _dispatcher_ready() -> bool:
    from dagcore.management.commands.dag import SUBCOMMANDS

    return (
        all(importlib.util.find_spec(module) is not None for module, _ in SUBCOMMANDS.values())
        and (REPO / "dagma_project" / "settings" / "all.py").exists()
    )


@pytest.mark.skipif(not _dispatcher_ready(), reason="the other dag subcommands are not written yet")
def test_manage_py_dag_auth_check_runs_as_a_subprocess(tmp_path):
    room = standard_room("11")
    good = room.make("m.room.message", ALICE, {"body": "x"})
    path = tmp_path / "good.json"
    path.write_text(json.dumps(case(room, good, with_state=True)))
    env = {**os.environ, "DAGMA_NO_BOOTSTRAP": "1"}
    cmd = [sys.executable, str(REPO / "manage.py"), "dag", "auth-check"]
    result = subprocess.run([*cmd, str(path)], capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["allowed"] is True

    path.write_text("[")
    result = subprocess.run([*cmd, str(path)], capture_output=True, text=True, env=env, cwd=REPO, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr

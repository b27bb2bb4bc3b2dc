"""``manage.py dag resolve FILE [--explain]``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagcore.cli import resolve as resolve_cli
from dagcore.protocol.state_res.tests.dag import ALICE, EVE, new_room

REPO = Path(__file__).resolve().parents[2]


def _ban_vs_join_input(version: str = "10") -> dict:
    room, main = new_room(version)
    banned, joined = main.copy(), main.copy()
    banned.ban(ALICE, EVE, event_id="$ban")
    joined.join(EVE, event_id="$eve_joins")
    return {
        "room_version": version,
        "events": [{**event.pdu, "event_id": eid} for eid, event in room.events.items()],
        "state_sets": [[[t, sk, eid] for (t, sk), eid in fork.state.items()] for fork in (banned, joined)],
    }


def _run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: object, *extra: str
) -> tuple[int, str, str]:
    path = tmp_path / "input.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    parser = argparse.ArgumentParser()
    resolve_cli.add_arguments(parser)
    code = resolve_cli.run(parser.parse_args([str(path), *extra]))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_resolve_prints_the_resolved_state_sorted(tmp_path, capsys, version):
    code, out, err = _run(tmp_path, capsys, _ban_vs_join_input(version))

    assert code == 0, err
    state = json.loads(out)["state"]
    assert state == sorted(state)
    assert ["m.room.member", EVE, "$ban"] in state
    assert err == ""


def test_resolve_explain_goes_to_stderr(tmp_path, capsys):
    code, out, err = _run(tmp_path, capsys, _ban_vs_join_input(), "--explain")

    assert code == 0
    assert ["m.room.member", EVE, "$ban"] in json.loads(out)["state"]
    assert "(m.room.member, '@eve:e.test') -> $ban" in err
    assert "rejected by the auth rules: sender is banned" in err


def _without(data: dict, event_id: str) -> dict:
    return {**data, "events": [e for e in data["events"] if e["event_id"] != event_id]}


def _with_event(data: dict, event_id: str, **changes: object) -> dict:
    events = [({**e, **changes} if e["event_id"] == event_id else e) for e in data["events"]]
    return {**data, "events": events}


BAD_INPUTS = {
    "not JSON": lambda d: "{nope",
    "not an object": lambda d: "[1, 2]",
    "unknown room version": lambda d: {**d, "room_version": "99"},
    "unsupported room version": lambda d: {**d, "room_version": "1"},
    "missing room version": lambda d: {k: v for k, v in d.items() if k != "room_version"},
    "events not a list": lambda d: {**d, "events": {}},
    "state event missing": lambda d: _without(d, "$ban"),
    "auth event missing": lambda d: _without(d, "$pl0"),
    "PDU without event_id": lambda d: {
        **d,
        "events": [{k: v for k, v in e.items() if k != "event_id"} for e in d["events"]],
    },
    "PDU content not an object": lambda d: _with_event(d, "$ban", content="ban"),
    "PDU not an object": lambda d: {**d, "events": [*d["events"], "x"]},
    "PDU auth_events not a list": lambda d: _with_event(d, "$ban", auth_events="$pl0"),
    "state_sets empty": lambda d: {**d, "state_sets": []},
    "state entry not a triple": lambda d: {**d, "state_sets": [[["m.room.topic", ""]], []]},
    "state entry names the wrong key": lambda d: {**d, "state_sets": [[["m.room.topic", "", "$ban"]], []]},
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_on_stderr(tmp_path, capsys, case):
    code, out, err = _run(tmp_path, capsys, BAD_INPUTS[case](_ban_vs_join_input()))

    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def _manage(*args: str) -> subprocess.CompletedProcess[str]:
    # The test already runs inside the project's virtualenv: skip manage.py's
    # "is .venv up to date" bootstrap, which may otherwise reach for pip.
    env = {**os.environ, "DAGMA_NO_BOOTSTRAP": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "dag", "resolve", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )


def test_manage_py_dag_resolve_prints_the_state_and_explains_on_stderr(tmp_path):
    path = tmp_path / "input.json"
    path.write_text(json.dumps(_ban_vs_join_input("12")))

    proc = _manage(str(path), "--explain")

    assert proc.returncode == 0, proc.stderr
    assert ["m.room.member", EVE, "$ban"] in json.loads(proc.stdout)["state"]
    assert "-> $ban" in proc.stderr


@pytest.mark.parametrize(
    "case", ["not JSON", "unknown room version", "state event missing", "PDU content not an object"]
)
def test_manage_py_dag_resolve_exits_2_on_bad_input(tmp_path, case):
    data = BAD_INPUTS[case](_ban_vs_join_input())
    path = tmp_path / "input.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))

    proc = _manage(str(path))

    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_manage_py_dag_resolve_exits_2_on_a_missing_file(tmp_path):
    proc = _manage(str(tmp_path / "nope.json"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
PDU_FIELDS = [
    "content",
    "sender",
    "state_key",
    "type",
    "auth_events",
    "prev_events",
    "origin_server_ts",
    "room_id",
]


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    version=st.sampled_from(["10", "12"]),
    index=st.integers(min_value=0, max_value=20),
    field=st.sampled_from(
        [*PDU_FIELDS, *(f"content.{k}" for k in ("membership", "users", "join_rule", "creator"))]
    ),
    value=json_values,
)
def test_mangled_pdus_resolve_or_exit_2_never_crash(tmp_path, capsys, version, index, field, value):
    data = _ban_vs_join_input(version)
    event = data["events"][index % len(data["events"])]
    if field.startswith("content."):
        event["content"] = {**event["content"], field.split(".", 1)[1]: value}
    else:
        event[field] = value

    code, out, err = _run(tmp_path, capsys, data)

    assert code in (0, 2), err
    assert (code == 0) == (out != "")

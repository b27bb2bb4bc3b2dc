"""``python manage.py dag redact FILE``: the redacted form of an event, or exit 2.

Spec: https://spec.matrix.org/v1.19/client-server-api/#redactions and the
room versions' "Redactions" sections.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ROOT / "manage.py"
# pytest-django puts manage.py's directory on sys.path; do it too so this file
# also runs with ``-p no:django`` (tests/ is not a package).
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dagcore.cli import redact as redact_cli  # noqa: E402

MEMBER_EVENT = {
    "type": "m.room.member",
    "state_key": "@bob:example.org",
    "sender": "@bob:example.org",
    "room_id": "!room:example.org",
    "origin": "example.org",
    "origin_server_ts": 1,
    "depth": 4,
    "prev_events": ["$p"],
    "auth_events": ["$a"],
    "hashes": {"sha256": "h"},
    "signatures": {"example.org": {"ed25519:x": "s"}},
    "unsigned": {"age": 3},
    "content": {
        "membership": "join",
        "displayname": "Bob",
        "join_authorised_via_users_server": "@mod:example.org",
    },
}


def _write(tmp_path: Path, data: Any, raw: str | None = None) -> Path:
    path = tmp_path / "input.json"
    path.write_text(raw if raw is not None else json.dumps(data), encoding="utf-8")
    return path


def _run_direct(path: Path | str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = redact_cli.run(argparse.Namespace(file=str(path)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_v11_member_event_is_printed_redacted_without_unsigned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run_direct(_write(tmp_path, {"room_version": "11", "event": MEMBER_EVENT}), capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "type": "m.room.member",
        "state_key": "@bob:example.org",
        "sender": "@bob:example.org",
        "room_id": "!room:example.org",
        "origin_server_ts": 1,
        "depth": 4,
        "prev_events": ["$p"],
        "auth_events": ["$a"],
        "hashes": {"sha256": "h"},
        "signatures": {"example.org": {"ed25519:x": "s"}},
        "content": {"membership": "join", "join_authorised_via_users_server": "@mod:example.org"},
    }
    assert out.count("\n") == 1


def test_redaction_follows_the_given_room_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = dict(MEMBER_EVENT, event_id="$e:example.org")
    code, out, _ = _run_direct(_write(tmp_path, {"room_version": "1", "event": event}), capsys)
    redacted = json.loads(out)
    assert code == 0
    assert redacted["origin"] == "example.org"  # v1-v10 keep origin
    assert redacted["event_id"] == "$e:example.org"
    assert redacted["content"] == {"membership": "join"}  # v1-v8: no join_authorised_via_users_server


@pytest.mark.parametrize(
    ("data", "raw", "message"),
    [
        (None, "{not json", "not valid JSON"),
        (None, "[1, 2]", "must contain a JSON object"),
        ({"room_version": "99", "event": {}}, None, "unknown room version"),
        ({"room_version": 11, "event": {}}, None, "unknown room version"),
        ({"event": {}}, None, "unknown room version"),
        ({"room_version": "11", "event": []}, None, '"event" must be a JSON object'),
        ({"room_version": "11"}, None, '"event" must be a JSON object'),
        (None, '{"room_version": "11", "event": {"content": {"a": NaN}}}', "not valid canonical JSON"),
        (None, '{"room_version": "11", "event": {"content": "\\ud800"}}', "not valid canonical JSON"),
    ],
)
def test_bad_input_exits_2_with_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: Any, raw: str | None, message: str
) -> None:
    code, out, err = _run_direct(_write(tmp_path, data, raw), capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = _run_direct(tmp_path / "absent.json", capsys)
    assert code == 2 and "cannot read" in err


# -- through manage.py, as operators run it ------------------------------------------------------


def _dispatcher_ready() -> bool:
    """manage.py exists and every ``dag`` subcommand module it loads is written."""
    from importlib.util import find_spec

    from dagcore.management.commands.dag import SUBCOMMANDS

    return MANAGE.exists() and all(find_spec(module) is not None for module, _help in SUBCOMMANDS.values())


# The dispatcher imports every subcommand module to build its parser, so until
# the other subcommands land these end-to-end tests cannot run.
needs_manage_py = pytest.mark.skipif(not _dispatcher_ready(), reason="manage.py dag is not complete yet")


def _manage(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DAGMA_NO_BOOTSTRAP="1")
    return subprocess.run(
        [sys.executable, str(MANAGE), "dag", "redact", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


@needs_manage_py
def test_manage_py_dag_redact_prints_the_redacted_event(tmp_path: Path) -> None:
    result = _manage(str(_write(tmp_path, {"room_version": "11", "event": MEMBER_EVENT})))
    assert result.returncode == 0, result.stderr
    redacted = json.loads(result.stdout)
    assert "unsigned" not in redacted and "origin" not in redacted
    assert redacted["content"] == {
        "membership": "join",
        "join_authorised_via_users_server": "@mod:example.org",
    }


@needs_manage_py
def test_manage_py_dag_redact_reads_stdin() -> None:
    result = _manage(
        "-",
        stdin=json.dumps(
            {"room_version": "12", "event": {"type": "m.room.message", "content": {"body": "x"}}}
        ),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"type": "m.room.message", "content": {}}


@needs_manage_py
@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        json.dumps({"room_version": "nope", "event": {}}),
        json.dumps({"room_version": "11", "event": 5}),
    ],
)
def test_manage_py_dag_redact_bad_input_exits_2_with_one_stderr_line(tmp_path: Path, payload: str) -> None:
    result = _manage(str(_write(tmp_path, None, payload)))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1

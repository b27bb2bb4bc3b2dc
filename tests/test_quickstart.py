"""The README's first command, as a new user runs it: ``python3 manage.py serve all`` in an empty
directory — SQLite, no Redis, tasks in-process — then ``register_user`` and a real client session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.client import MatrixClient, q
from tests.support.live import free_port

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("DAGMA_") and k != "DJANGO_SETTINGS_MODULE"
    }
    # Only the port differs from the README's run (tests must not take 8008).
    env.update(
        DAGMA_NO_BOOTSTRAP="1",
        DAGMA_LISTENERS=f"[{{port: {port}, bind_addresses: ['127.0.0.1'], resources: [{{names: [client, federation]}}]}}]",
    )
    return env


@pytest.fixture
def quickstart(tmp_path: Path):
    port = free_port()
    env = _env(tmp_path, port)
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "serve", "all"], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            if httpx.get(base + "/_matrix/client/versions", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        raise AssertionError((tmp_path / "serve.log").read_text())
    yield base, tmp_path, env, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_serve_all_in_an_empty_directory_generates_config_and_key_and_serves_a_client(quickstart) -> None:
    base, workdir, env, _proc = quickstart
    assert (workdir / "dagma.yaml").exists()
    assert (workdir / "localhost.signing.key").exists()
    assert (workdir / "homeserver.db").exists()  # SQLite, the embedded default
    # A fresh server with closed registration says how to make the first account.
    assert "python3 manage.py register_user alice --admin" in (workdir / "serve.log").read_text()

    # README: create the first account with register_user, then log in with a client.
    (workdir / "pw").write_text("s3cret-quickstart\n")
    made = subprocess.run([sys.executable, str(ROOT / "manage.py"), "register_user", "alice", "--admin",
                           "--password-file", str(workdir / "pw")], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "@alice:localhost" in made.stdout

    alice = MatrixClient(base)
    login = alice.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                                  "password": "s3cret-quickstart"}, auth=False)  # fmt: skip
    alice.access_token = login.json["access_token"]
    assert login.json["user_id"] == "@alice:localhost"
    room_id = alice.create_room(name="quick start")
    event_id = alice.send(room_id, "hello from the quick start")
    sync = alice.sync()
    timeline = sync["rooms"]["join"][room_id]["timeline"]["events"]
    assert event_id in [e["event_id"] for e in timeline]
    got = alice.get(f"/rooms/{q(room_id)}/event/{q(event_id)}").json
    assert got["content"]["body"] == "hello from the quick start"
    # registration is closed by default
    closed = MatrixClient(base).post("/register", {"username": "mallory", "password": "x" * 12,
                                                   "auth": {"type": "m.login.dummy"}}, auth=False, expect=403)  # fmt: skip
    assert closed.json["errcode"] == "M_FORBIDDEN"


def test_sigterm_stops_the_server_gracefully(quickstart) -> None:
    base, _workdir, _env, proc = quickstart
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(base + "/_matrix/client/versions", timeout=1)

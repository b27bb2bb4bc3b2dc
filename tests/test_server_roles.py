"""The three servers mount independently: each ``serve <role>`` process answers only its own routes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.live import ROOT, LiveServer, free_port


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(log.read_text()[-3000:])


@pytest.fixture
def three_servers(tmp_path: Path):
    base = LiveServer(tmp_path)
    base.write_config()
    base.create_database()
    base.migrate()
    ports = {"tribune": free_port(), "embassy": free_port(), "politburo": free_port()}
    config = yaml.safe_load(base.config_path.read_text())
    config["listeners"] = [
        {
            "port": ports["tribune"],
            "bind_addresses": ["127.0.0.1"],
            "resources": [{"names": ["client", "media"]}],
        },
        {
            "port": ports["embassy"],
            "bind_addresses": ["127.0.0.1"],
            "resources": [{"names": ["federation", "keys"]}],
        },
        {"port": ports["politburo"], "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["admin"]}]},
    ]
    base.config_path.write_text(yaml.safe_dump(config))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for role, port in ports.items():
        log = tmp_path / f"{role}.log"
        procs[role] = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", role],
            env=base.env(), cwd=tmp_path, stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )  # fmt: skip
        _wait(f"http://127.0.0.1:{port}/health", procs[role], log)
    yield {role: f"http://127.0.0.1:{port}" for role, port in ports.items()}, procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    base.destroy()


def test_each_server_answers_only_its_own_routes_and_stops_on_sigterm(three_servers) -> None:
    urls, procs = three_servers
    tribune, embassy, politburo = urls["tribune"], urls["embassy"], urls["politburo"]

    assert httpx.get(tribune + "/_matrix/client/versions").status_code == 200
    not_here = httpx.get(tribune + "/_matrix/key/v2/server")
    assert not_here.status_code == 404 and not_here.json()["errcode"] == "M_UNRECOGNIZED"

    keys = httpx.get(embassy + "/_matrix/key/v2/server")
    assert keys.status_code == 200 and keys.json()["server_name"] == "localhost"
    assert httpx.get(embassy + "/_matrix/client/versions").status_code == 404

    # The console asks for a login first (its pages need a server admin's session).
    console = httpx.get(politburo + "/", follow_redirects=True)
    assert console.status_code == 200 and "localhost" in console.text and console.url.path == "/login"
    assert httpx.get(politburo + "/_matrix/client/versions").status_code == 404
    # The admin console is not reachable through the public servers.
    for public in (tribune, embassy):
        assert httpx.get(public + "/").status_code == 404

    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        assert proc.wait(timeout=20) == 0


def test_a_start_up_hook_that_cannot_load_stops_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagma_project import startup

    monkeypatch.setattr(startup, "_started", False)
    monkeypatch.setitem(startup.ROLE_HOOKS, "all", ["tribune.no_such_hooks"])
    with pytest.raises(ModuleNotFoundError):
        startup.on_process_start()

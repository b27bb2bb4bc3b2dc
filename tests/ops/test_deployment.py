"""Deployment files (contrib/) and the production guard against SQLite."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dagma_project.config import ConfigError, build_config, check_database_for_production, production_reasons
from tests.support.live import ROOT, LiveServer

CONTRIB = ROOT / "contrib"
SERVICES = ["dagma-tribune@.service", "dagma-embassy.service", "dagma-politburo.service",
            "dagma-worker.service", "dagma-beat.service"]  # fmt: skip


def render_units(out: Path) -> list[Path]:
    """The units as installed under a prefix that exists here: this checkout and its Python."""
    paths = []
    for src in sorted((CONTRIB / "systemd").iterdir()):
        text = (
            src.read_text()
            .replace("/opt/dagma/.venv/bin/python", sys.executable)
            .replace("/opt/dagma", str(ROOT))
        )
        dest = out / src.name.replace("@.service", "@8008.service")
        dest.write_text(text)
        paths.append(dest)
    return paths


def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = render_units(tmp_path)
    assert {u.name for u in units} == {"dagma-tribune@8008.service", "dagma-embassy.service", "dagma-politburo.service",
                                       "dagma-worker.service", "dagma-beat.service", "dagma.target"}  # fmt: skip
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *[str(u) for u in units]],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    # Unknown or mistyped settings are only warnings: any output is a failure too.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_sandboxed_runs_as_dagma_and_restarts_on_failure(name: str) -> None:
    text = (CONTRIB / "systemd" / name).read_text()
    for line in ("ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "ReadWritePaths=/var/lib/dagma", "User=dagma", "Restart=on-failure",
                 "Environment=DAGMA_ENVIRONMENT=production"):  # fmt: skip
        assert re.search(rf"^{re.escape(line)}$", text, re.M), f"{name}: {line}"


def test_politburo_is_never_started_by_the_target_nor_enabled() -> None:
    politburo = (CONTRIB / "systemd" / "dagma-politburo.service").read_text()
    target = (CONTRIB / "systemd" / "dagma.target").read_text()
    assert not re.search(r"^\[Install\]|^WantedBy", politburo, re.M)
    assert "politburo" not in re.search(r"^Wants=(.*)$", target, re.M).group(1)  # type: ignore[union-attr]
    for name in ("dagma-tribune@8008", "dagma-embassy", "dagma-worker", "dagma-beat"):
        assert name in target


def test_the_proxies_send_client_and_media_to_tribune_and_federation_to_the_embassy_never_to_politburo() -> (
    None
):
    nginx = (CONTRIB / "nginx" / "dagma.conf").read_text()
    routes = dict(re.findall(r"location\s+(?:=\s+)?(\S+)\s*\{\s*proxy_pass\s+http://(\w+);", nginx))
    assert routes == {
        "/_matrix/client/": "dagma_tribune", "/_matrix/media/": "dagma_tribune",
        "/.well-known/matrix/client": "dagma_tribune", "/_matrix/federation/": "dagma_embassy",
        "/_matrix/key/": "dagma_embassy", "/.well-known/matrix/server": "dagma_embassy",
    }  # fmt: skip
    caddy = (CONTRIB / "caddy" / "Caddyfile").read_text()
    assert re.search(r"@tribune path /_matrix/client/\* /_matrix/media/\*", caddy)
    assert re.search(r"@embassy path /_matrix/federation/\* /_matrix/key/\*", caddy)
    for text in (nginx, caddy):
        assert "8009" not in text  # Politburo's port
        assert not re.search(r"(proxy_pass|reverse_proxy)[^\n]*(_synapse|politburo|admin)", text)
    if shutil.which("nginx"):  # a syntax check where nginx is installed
        subprocess.run(["nginx", "-t", "-c", str(CONTRIB / "nginx" / "dagma.conf")], check=False)


# --------------------------------------------------------------------------- production vs SQLite


def config(**raw: object):
    return build_config({"server_name": "example.com", **raw}, env={})


@pytest.mark.sqlite
def test_a_production_server_refuses_sqlite_unless_forced() -> None:
    public = [{"port": 8008, "bind_addresses": ["0.0.0.0"], "resources": [{"names": ["client"]}]}]
    assert production_reasons(config()) == []  # the quick start
    check_database_for_production(config())
    assert production_reasons(config(listeners=public)) == ["listener port 8008 binds 0.0.0.0"]
    for prod in (config(environment="production"), config(listeners=public)):
        with pytest.raises(
            ConfigError, match=r"^database: SQLite is for trying Dagma.*allow_sqlite_in_production"
        ):
            check_database_for_production(prod)
    check_database_for_production(config(environment="production", allow_sqlite_in_production=True))
    check_database_for_production(
        config(environment="production", database={"name": "psycopg2", "args": {"database": "dagma"}})
    )
    with pytest.raises(ConfigError, match=r"^environment: expected one of development, production"):
        config(environment="prod")


@pytest.mark.live
def test_serve_stops_on_sqlite_in_production_naming_the_option_and_starts_when_forced(tmp_path: Path) -> None:
    refused = LiveServer(
        tmp_path / "refused", database="sqlite", redis=False, config={"environment": "production"}
    )
    with pytest.raises(RuntimeError, match="database: SQLite is for trying Dagma"):
        refused.start()
    assert not (tmp_path / "refused" / "homeserver.db").exists()  # nothing was created
    forced = LiveServer(tmp_path / "forced", database="sqlite", redis=False,
                        config={"environment": "production", "allow_sqlite_in_production": True})  # fmt: skip
    try:
        forced.start()
        assert forced.answers()
    finally:
        forced.destroy()


def test_a_tribune_instance_listens_on_its_own_port_behind_the_proxy() -> None:
    """``dagma-tribune@8010.service``: its DAGMA_LISTENERS (instance name as the port) is a valid
    listener for Tribune alone, on loopback, trusting the proxy's X-Forwarded-For."""
    unit = (CONTRIB / "systemd" / "dagma-tribune@.service").read_text()
    match = re.search(r'^Environment="DAGMA_LISTENERS=(.*)"$', unit, re.M)
    assert match is not None
    env = {"DAGMA_LISTENERS": match.group(1).replace("%i", "8010")}
    config = build_config({"server_name": "example.com"}, env=env)
    assert config.listeners == [
        {
            "port": 8010,
            "bind_addresses": ["127.0.0.1"],
            "names": ["client", "media"],
            "x_forwarded": True,
            "tls": False,
        }
    ]
    assert production_reasons(config) == []  # loopback: the proxy is the public side

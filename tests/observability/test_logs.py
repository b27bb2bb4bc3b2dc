"""Log lines: JSON or text (``log_format``), syslog priorities under journald, the access line."""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
from pathlib import Path

import httpx
import pytest

from dagma_project.config import ConfigError, build_config
from dagma_project.logging import JsonFormatter, TextFormatter
from tests.support.client import MatrixClient
from tests.support.live import LiveServer, Politburo, free_port, wait_for


def record(level: int, msg: str, *, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("the cause")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("dagma.test", level, __file__, 1, msg, (), exc_info)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_lines_carry_their_syslog_priority_under_journald() -> None:
    formatter = JsonFormatter(journald=True)
    assert formatter.format(record(logging.ERROR, "boom")).startswith('<3>{"ts": ')
    assert formatter.format(record(logging.WARNING, "hm")).startswith("<4>{")
    assert formatter.format(record(logging.INFO, "ok")).startswith("<6>{")
    assert formatter.format(record(logging.DEBUG, "dbg")).startswith("<7>{")
    assert formatter.format(record(logging.CRITICAL, "down")).startswith("<2>{")
    # One line, even with a traceback (JSON escapes its newlines).
    line = formatter.format(record(logging.ERROR, "failed", exc=True, room_id="!r:x"))
    assert "\n" not in line
    entry = json.loads(line.removeprefix("<3>"))
    assert entry["room_id"] == "!r:x"
    assert "ValueError: the cause" in entry["exc"]


def test_no_priority_prefix_outside_journald() -> None:
    assert JsonFormatter(journald=False).format(record(logging.ERROR, "boom")).startswith("{")
    assert TextFormatter(journald=False).format(record(logging.ERROR, "boom"))[0].isdigit()


def test_journald_is_detected_from_journal_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    assert JsonFormatter().format(record(logging.ERROR, "boom")).startswith("<3>")
    monkeypatch.delenv("JOURNAL_STREAM")
    assert JsonFormatter().format(record(logging.ERROR, "boom")).startswith("{")


def test_text_lines_are_readable_and_a_traceback_keeps_its_priority_on_every_line() -> None:
    line = TextFormatter(journald=False).format(record(logging.WARNING, "slow peer", destination="b.example"))
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 WARNING dagma\.test: slow peer \[destination=b\.example\]",
        line,
    )
    lines = TextFormatter(journald=True).format(record(logging.ERROR, "failed", exc=True)).split("\n")
    assert len(lines) > 2
    assert all(part.startswith("<3>") for part in lines)
    assert lines[-1] == "<3>ValueError: the cause"


def test_log_format_and_metrics_options_are_validated_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^log_format: expected one of json, text; got 'xml'"):
        build_config({"server_name": "a.example", "log_format": "xml"}, env={})
    with pytest.raises(ConfigError, match=r"^metrics_port: expected an integer from 1 to 65535"):
        build_config({"server_name": "a.example", "metrics_port": 0}, env={})
    with pytest.raises(ConfigError, match=r"^enable_metrics: expected a boolean"):
        build_config({"server_name": "a.example", "enable_metrics": "yes"}, env={})
    config = build_config({"server_name": "a.example"}, env={"DAGMA_METRICS_PORT": "9102"})
    assert (config.enable_metrics, config.metrics_port, config.metrics_bind_address) == (
        False,
        9102,
        "127.0.0.1",
    )


def test_a_quick_start_server_under_journald_logs_text_lines_with_priorities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite, no Redis, ``log_format: text``, started as a systemd unit would (JOURNAL_STREAM),
    metrics on from ``serve --metrics-port``; a Politburo beside it logs its requests too."""
    monkeypatch.setenv("JOURNAL_STREAM", "8:4242")
    server = LiveServer(tmp_path, database="sqlite", redis=False, config={"log_format": "text"})
    metrics_port = free_port()
    server.write_config()
    politburo = Politburo(server).add_listener()
    try:
        # What LiveServer.start does, with the command-line option.
        import subprocess

        from tests.support.live import ROOT

        log = open(server.log_path, "ab")  # noqa: SIM115 - the process writes it
        server.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "all", "--metrics-port", str(metrics_port)],
            env=server.env(), stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp_path),
        )  # fmt: skip
        wait_for(server.answers, "the quick-start server to answer")
        alice = MatrixClient(server.base_url).register(f"a{secrets.token_hex(3)}")
        alice.get("/account/whoami")

        def access_line() -> str | None:
            lines = server.log_path.read_text().splitlines()
            return next(
                (ln for ln in lines if "dagma.access: GET /_matrix/client/v3/account/whoami" in ln), None
            )

        line = wait_for(access_line, "the whoami access line")
        assert re.fullmatch(
            r"<6>\S+ INFO dagma\.access: GET /_matrix/client/v3/account/whoami 200 "
            r"[\d.]+ms db=[\d.]+ms/\d+q " + re.escape(str(alice.user_id)),
            line,
        ), line
        assert str(alice.access_token) not in server.log_path.read_text()
        # Every line Dagma logs carries a priority (the "listening on" lines of serve are stderr text).
        logged = [ln for ln in server.log_path.read_text().splitlines() if " dagma" in ln and ": " in ln]
        assert logged and all(re.match(r"<[2-7]>", ln) for ln in logged if not ln.startswith("dagma "))
        # Politburo's requests have their access line too (its own process, its own log).
        politburo.start()
        assert (
            httpx.get(politburo.base_url + "/_synapse/admin/v1/server_version", timeout=10).status_code == 200
        )
        politburo_log = tmp_path / "politburo.log"
        admin_line = wait_for(
            lambda: next(
                (
                    ln
                    for ln in politburo_log.read_text().splitlines()
                    if "GET /_synapse/admin/v1/server_version" in ln
                ),
                None,
            ),
            "Politburo's access line",
        )
        assert re.fullmatch(
            r"<6>\S+ INFO dagma\.access: GET /_synapse/admin/v1/server_version 200 [\d.]+ms db=[\d.]+ms/\d+q -",
            admin_line,
        ), admin_line
        # The admin API names who asked, even when refused (Alice is no server admin).
        r = httpx.get(
            politburo.base_url + "/_synapse/admin/v2/users",
            params={"access_token": str(alice.access_token)},
            timeout=10,
        )
        assert r.status_code == 403
        refused = wait_for(
            lambda: next(
                (ln for ln in politburo_log.read_text().splitlines() if "GET /_synapse/admin/v2/users" in ln),
                None,
            ),
            "the refused admin request's access line",
        )
        assert refused.endswith(" " + str(alice.user_id)) and " 403 " in refused, refused
        assert str(alice.access_token) not in politburo_log.read_text()
        # The metrics listener of the command-line option, on SQLite.
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10.0).text
        size = re.search(r'^dagma_database_size_bytes\{role="all"\} (\S+)$', text, re.MULTILINE)
        assert size and float(size.group(1)) > 0
        assert 'dagma_disk_free_bytes{path="database",role="all"}' in text
    finally:
        politburo.stop()
        server.destroy()

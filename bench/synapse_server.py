"""Start a Synapse (from PyPI, in its own virtualenv) on this machine, for side-by-side benchmarks.

    python3 -m venv .tmp/synapse-venv && .tmp/synapse-venv/bin/pip install matrix-synapse psycopg2-binary
    SYNAPSE_VENV=.tmp/synapse-venv DAGMA_NO_BOOTSTRAP=1 .venv/bin/python bench/client_api_bench.py --with-synapse

Synapse gets the same database engine as Dagma (PostgreSQL, a fresh C-collated
database), open registration and rate limits off, so the comparison measures
the servers, not their defaults. Nothing of Synapse is part of Dagma.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class SynapseServer:
    def __init__(self, workdir: Path, port: int, venv: Path | None = None) -> None:
        self.workdir = workdir
        self.port = port
        self.venv = venv or Path(os.environ.get("SYNAPSE_VENV", ROOT / ".tmp" / "synapse-venv"))
        self.db_name = f"synapse_bench_{secrets.token_hex(4)}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{port}"

    def start(self) -> SynapseServer:
        python = self.venv / "bin" / "python"
        if not python.exists():
            raise SystemExit(f"no Synapse virtualenv at {self.venv}; see this file's docstring")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "homeserver.yaml"
        subprocess.run(
            [str(python), "-m", "synapse.app.homeserver", "--server-name", "localhost", "--config-path",
             str(config_path), "--generate-config", "--report-stats=no"],
            cwd=self.workdir, check=True, capture_output=True,
        )  # fmt: skip
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE \"{self.db_name}\" TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
        config = yaml.safe_load(config_path.read_text())
        config["listeners"] = [{"port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                                "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}]  # fmt: skip
        config["database"] = {"name": "psycopg2", "args": {"user": "postgres", "host": "127.0.0.1",
                                                          "database": self.db_name, "cp_min": 5, "cp_max": 20}}  # fmt: skip
        config["enable_registration"] = True
        config["enable_registration_without_verification"] = True
        unlimited = {"per_second": 10000, "burst_count": 100000}
        for key in ("rc_message", "rc_registration", "rc_admin_redaction", "rc_room_creation", "rc_presence",
                    "rc_reports", "rc_delayed_event_mgmt", "rc_3pid_validation", "rc_media_create"):  # fmt: skip
            config[key] = unlimited
        config["rc_joins"] = {"local": unlimited, "remote": unlimited}
        config["rc_login"] = {k: unlimited for k in ("address", "account", "failed_attempts")}
        config["rc_invites"] = {"per_room": unlimited, "per_user": unlimited}
        config["rc_joins_per_room"] = unlimited
        config["presence"] = {"enabled": True}
        config_path.write_text(yaml.safe_dump(config))
        log = open(self.workdir / "synapse.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([str(python), "-m", "synapse.app.homeserver", "--config-path", str(config_path)],
                                     cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.workdir / "synapse.log").read_text()[-3000:])
            try:
                if httpx.get(self.base_url + "/_matrix/client/versions", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("Synapse did not start")

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

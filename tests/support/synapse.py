"""A real Synapse, from PyPI, as a federation peer in the test suite.

:func:`ensure_synapse` installs ``matrix-synapse==SYNAPSE_VERSION`` (with
psycopg2-binary) into its own virtualenv, cached OUTSIDE the repository at
``~/.cache/dagma/synapse-venv-<version>`` (``DAGMA_SYNAPSE_VENV`` overrides the
path): created once — into a scratch directory renamed into place when complete,
under a file lock, so concurrent test runs neither install twice nor see half an
install — and reused after. The first install takes minutes; a failed install
fails the tests that need it (nothing is skipped).

:class:`SynapsePeer` runs it the way the live Dagma servers run: server name
``localhost:<federation port>``, federation on a TLS listener with a certificate
from the suite's test CA, remote certificates verified against that CA
(``federation_custom_ca_list``), loopback allowed (``ip_range_whitelist``), no
notary (``trusted_key_servers: []``, keys fetched from each server itself), short
destination retry intervals so an outage test does not wait ten minutes, a fresh
C-collated PostgreSQL database, registration open and rate limits off, presence on, and a
public room directory users may publish to and other servers may read.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from tests.federation.certs import ServerCert, TestCA
from tests.support.live import PG_DSN, free_port

#: The Synapse the interop tests run against (bump deliberately: a new venv is built).
SYNAPSE_VERSION = "1.163.2"
INSTALL_TIMEOUT_S = 1800


def synapse_venv_path() -> Path:
    override = os.environ.get("DAGMA_SYNAPSE_VENV")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "dagma" / f"synapse-venv-{SYNAPSE_VERSION}"


def _installed(venv: Path) -> bool:
    python = venv / "bin" / "python"
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import synapse, psycopg2; print(synapse.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0 and probe.stdout.strip() == SYNAPSE_VERSION


def ensure_synapse() -> Path:
    """The Synapse virtualenv, installed first if need be; raises with pip's output if that fails."""
    venv = synapse_venv_path()
    if _installed(venv):
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be installing it right now
        if _installed(venv):
            return venv
        scratch = venv.parent / f"{venv.name}.partial-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        # The venv's own interpreter is a link to this one; ``python -m`` is used throughout,
        # so moving the directory into place afterwards keeps it working.
        subprocess.run([sys.executable, "-m", "venv", str(scratch)], check=True, capture_output=True)
        pip = subprocess.run(
            [str(scratch / "bin" / "python"), "-m", "pip", "install", "--quiet",
             f"matrix-synapse=={SYNAPSE_VERSION}", "psycopg2-binary"],
            capture_output=True, text=True, check=False, timeout=INSTALL_TIMEOUT_S,
        )  # fmt: skip
        if pip.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise RuntimeError(f"installing matrix-synapse=={SYNAPSE_VERSION} failed:\n{pip.stderr[-4000:]}")
        shutil.rmtree(venv, ignore_errors=True)
        scratch.rename(venv)
    if not _installed(venv):
        raise RuntimeError(f"{venv} does not hold a working Synapse {SYNAPSE_VERSION}")
    return venv


class SynapsePeer:
    """One Synapse process federating over TLS (see the module docstring)."""

    def __init__(self, workdir: Path, *, ca: TestCA, cert: ServerCert, venv: Path | None = None) -> None:
        self.workdir = workdir
        self.ca = ca
        self.cert = cert
        self.venv = venv or synapse_venv_path()
        self.port = free_port()
        self.federation_port = free_port()
        self.server_name = f"localhost:{self.federation_port}"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.federation_url = f"https://127.0.0.1:{self.federation_port}"
        self.db_name = f"synapse_test_{secrets.token_hex(4)}"
        self.config_path = workdir / "homeserver.yaml"
        self.log_path = workdir / "synapse.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def signing_key_path(self) -> Path:
        config = yaml.safe_load(self.config_path.read_text())
        return Path(config["signing_key_path"])

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(self.python), "-m", "synapse.app.homeserver", "--server-name", self.server_name,
             "--config-path", str(self.config_path), "--generate-config", "--report-stats=no"],
            cwd=self.workdir, check=True, capture_output=True,
        )  # fmt: skip
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE \"{self.db_name}\" TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
        config: dict[str, Any] = yaml.safe_load(self.config_path.read_text())
        config["listeners"] = [
            {"port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
             "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]},
            {"port": self.federation_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
             "x_forwarded": False, "resources": [{"names": ["federation", "keys"], "compress": False}]},
        ]  # fmt: skip
        config["tls_certificate_path"] = str(self.cert.cert_path)
        config["tls_private_key_path"] = str(self.cert.key_path)
        config["federation_verify_certificates"] = True
        config["federation_custom_ca_list"] = [str(self.ca.cert_path)]
        config["ip_range_whitelist"] = ["127.0.0.0/8", "::1/128"]
        config["trusted_key_servers"] = []
        config["suppress_key_server_warning"] = True
        config["federation"] = {
            "destination_min_retry_interval": 500,
            "destination_retry_multiplier": 2,
            "destination_max_retry_interval": "5s",
        }
        config["database"] = {
            "name": "psycopg2",
            "args": {
                "user": "postgres",
                "host": "127.0.0.1",
                "database": self.db_name,
                "cp_min": 2,
                "cp_max": 10,
            },
        }
        # Presence (Synapse's default, stated: the presence tests need it) and a directory other
        # servers may read, where users may publish (Synapse publishes nothing by default).
        config["presence"] = {"enabled": True}
        config["allow_public_rooms_over_federation"] = True
        config["room_list_publication_rules"] = [{"action": "allow"}]
        config["enable_registration"] = True
        config["enable_registration_without_verification"] = True
        unlimited = {"per_second": 10000, "burst_count": 100000}
        for key in ("rc_message", "rc_registration", "rc_admin_redaction", "rc_room_creation",
                    "rc_federation", "rc_joins_per_room"):  # fmt: skip
            config[key] = unlimited
        config["rc_federation"] = {"window_size": 1000, "sleep_limit": 1000, "sleep_delay": 1,
                                   "reject_limit": 10000, "concurrent": 100}  # fmt: skip
        config["rc_joins"] = {"local": unlimited, "remote": unlimited}
        config["rc_login"] = {k: unlimited for k in ("address", "account", "failed_attempts")}
        config["rc_invites"] = {"per_room": unlimited, "per_user": unlimited}
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self, timeout: float = 120.0) -> SynapsePeer:
        if not self.config_path.exists():
            self.write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [str(self.python), "-m", "synapse.app.homeserver", "--config-path", str(self.config_path)],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Synapse exited:\n{self.log_tail()}")
            try:
                if httpx.get(self.base_url + "/_matrix/client/versions", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # start-up: polling its client port, with a deadline
        raise RuntimeError(f"Synapse did not start within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        with contextlib.suppress(psycopg.Error), psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text()[-n:] if self.log_path.exists() else ""

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows from Synapse's own database (what it stored, seen from outside)."""
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.db_name}") as conn:
            return list(conn.execute(sql, params).fetchall())

    def register(self, localpart: str) -> dict[str, Any]:
        r = httpx.post(
            self.base_url + "/_matrix/client/v3/register",
            json={
                "username": localpart,
                "password": "correct horse battery",
                "auth": {"type": "m.login.dummy"},
            },
            timeout=30,
        )
        r.raise_for_status()
        return dict(r.json())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def synapse_venv() -> Path:
    """Synapse installed (minutes, the first time on a machine; cached after)."""
    return ensure_synapse()


@pytest.fixture(scope="session")
def synapse_peer(
    synapse_venv: Path, test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SynapsePeer]:
    """One Synapse for the session, federating over TLS with the suite's test CA."""
    root = tmp_path_factory.mktemp("synapse")
    peer = SynapsePeer(root / "hs", ca=test_ca, cert=test_ca.issue("localhost", "127.0.0.1", stem="synapse"))
    try:
        yield peer.start()
    finally:
        peer.destroy()


@contextlib.contextmanager
def people_of(dagma: Any, peer: SynapsePeer) -> Iterator[Callable[[str], Any]]:
    """``"dagma"`` or ``"synapse"`` -> a fresh logged-in user of that server (a ``MatrixClient``);
    every client made is closed at the end."""
    from tests.support.client import MatrixClient

    made: list[MatrixClient] = []

    def factory(where: str) -> MatrixClient:
        name = f"u{secrets.token_hex(4)}"
        if where == "dagma":
            client = MatrixClient(dagma.base_url, timeout=120).register(name)
        else:
            login = peer.register(name)
            client = MatrixClient(peer.base_url, login["access_token"], timeout=120)
            client.user_id = login["user_id"]
        made.append(client)
        return client

    try:
        yield factory
    finally:
        for client in made:
            client.close()

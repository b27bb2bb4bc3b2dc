"""Real server processes for API tests: ``manage.py serve ...`` started as a subprocess.

Each ``LiveServer`` gets its own config directory, signing key, database (a
fresh PostgreSQL database, or an SQLite file) and free port; it is started
exactly as an operator would (``serve``), and stopped with SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
PG_DSN = os.environ.get("DAGMA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DAGMA_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Server processes running now (a failed test's report shows their threads and logs).
_running: set[LiveServer] = set()


def running_servers() -> list[LiveServer]:
    return [server for server in _running if server.proc is not None and server.proc.poll() is None]


def _pg_admin(sql: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(sql)


class LiveServer:
    def __init__(
        self,
        workdir: Path,
        *,
        server_name: str = "localhost",
        database: str = "postgres",
        redis: bool = True,
        config: dict[str, Any] | None = None,
        role: str = "all",
        db_name: str | None = None,
        federation_tls: tuple[Path, Path] | None = None,
        python: str | None = None,
    ) -> None:
        """``federation_tls`` = (certificate, private key): federation is then served on its own
        TLS listener (``federation_port``, ``federation_url``) and, unless given, the server
        name is ``localhost:<federation_port>``, so other servers find it without DNS.
        ``python``: the interpreter ``serve`` runs with (the bench's production-only venv)."""
        self.python = python or sys.executable
        self.workdir = workdir
        self.federation_tls = federation_tls
        self.federation_port = free_port() if federation_tls else None
        self.federation_url = f"https://127.0.0.1:{self.federation_port}" if federation_tls else None
        if federation_tls and server_name == "localhost":
            server_name = f"localhost:{self.federation_port}"
        self.server_name = server_name
        self.database = database
        self.redis = redis
        self.role = role
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.db_name = db_name or f"dagma_live_{secrets.token_hex(4)}"
        self.owns_db = db_name is None
        self.extra_config = config or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.config_path = workdir / "dagma.yaml"
        self.log_path = workdir / f"{role}-{self.port}.log"

    # -- set-up ------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in list(env):
            if key.startswith("DAGMA_") and key not in ("DAGMA_VENV",):
                del env[key]
        env.update(
            DAGMA_CONFIG=str(self.config_path),
            DAGMA_NO_BOOTSTRAP="1",
            PYTHONUNBUFFERED="1",
        )
        env.pop("DJANGO_SETTINGS_MODULE", None)
        return env

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            subprocess.run(
                [sys.executable, str(ROOT / "manage.py"), "generate_config", "--server-name", self.server_name,
                 "--out", str(self.config_path)],
                env=self.env(), check=True, capture_output=True,
            )  # fmt: skip
        config = yaml.safe_load(self.config_path.read_text())
        if self.database == "postgres":
            config["database"] = {
                "name": "psycopg2",
                "args": {
                    "user": "postgres",
                    "host": "127.0.0.1",
                    "database": self.db_name,
                    "cp_min": 1,
                    # A server's /send and /sync pools (8 + 6 threads) may each hold a
                    # connection at once; fewer makes requests wait for the pool.
                    "cp_max": 20,
                },
            }
        else:
            config["database"] = {
                "name": "sqlite3",
                "args": {"database": str(self.workdir / "homeserver.db")},
            }
        if self.redis:
            host_port, _, dbid = REDIS_URL.removeprefix("redis://").partition("/")
            host, _, port = host_port.partition(":")
            config["redis"] = {
                "enabled": True,
                "host": host,
                "port": int(port or 6379),
                "dbid": int(dbid or 0),
            }
        config["listeners"] = [
            {
                "port": self.port,
                "bind_addresses": ["127.0.0.1"],
                "resources": [{"names": ["client"] if self.federation_tls else ["client", "federation"]}],
            }
        ]
        if self.federation_tls:
            config["listeners"].append(
                {
                    "port": self.federation_port,
                    "bind_addresses": ["127.0.0.1"],
                    "tls": True,
                    "resources": [{"names": ["federation", "keys"]}],
                }
            )
            config["tls_certificate_path"] = str(self.federation_tls[0])
            config["tls_private_key_path"] = str(self.federation_tls[1])
        config["public_baseurl"] = self.base_url + "/"
        config["enable_registration"] = True  # the generated file says false; extra_config may say so again
        config.setdefault("enable_registration_without_verification", True)
        # Tests register and send a lot; dedicated tests turn limits back on.
        for rc in ("rc_message", "rc_registration", "rc_joins"):
            config.setdefault(rc, {"per_second": 1000, "burst_count": 10000})
        config.setdefault(
            "rc_login",
            {
                k: {"per_second": 1000, "burst_count": 10000}
                for k in ("address", "account", "failed_attempts")
            },
        )
        # Test-only endpoints (/_dagma/test/*): tests wait on what the server does, never on a sleep.
        config.setdefault("enable_test_hooks", True)
        config.update(self.extra_config)
        self.config_path.write_text(yaml.safe_dump(config))

    def create_database(self) -> None:
        if self.database == "postgres" and self.owns_db:
            _pg_admin(f'CREATE DATABASE "{self.db_name}"')

    def migrate(self) -> None:
        if self.database == "postgres":
            subprocess.run(
                [sys.executable, str(ROOT / "manage.py"), "migrate", "--verbosity", "0"],
                env=self.env(), check=True, capture_output=True,
            )  # fmt: skip

    def manage(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env(),
            capture_output=True,
            input=input,
            check=False,
        )

    # -- running -----------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> LiveServer:
        if not self.config_path.exists():
            self.write_config()
            self.create_database()
            self.migrate()
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [self.python, str(ROOT / "manage.py"), "serve", self.role],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=str(self.workdir),
        )  # fmt: skip
        _running.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()[-4000:]}"
                )
            if self.answers():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"server did not start within {timeout}s:\n{self.log_path.read_text()[-4000:]}")

    def answers(self) -> bool:
        """Whether the process answers on its main listener: the client API, or for an Embassy
        alone its federation listener (TLS with the test CA: only whether it answers matters)."""
        try:
            if self.role == "embassy":
                url = (self.federation_url or self.base_url) + "/_matrix/federation/v1/version"
                return httpx.get(url, timeout=1.0, verify=False).status_code == 200
            return httpx.get(self.base_url + "/_matrix/client/versions", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def process(self, role: str) -> LiveServer:
        """Another process of this homeserver (production layout: ``serve tribune`` here, its
        ``serve embassy`` there): the same config file, keys, database, Redis and ports, its
        own log. Start this one first (it writes the config and creates the database)."""
        other = LiveServer(
            self.workdir,
            server_name=self.server_name,
            database=self.database,
            redis=self.redis,
            config=self.extra_config,
            role=role,
            db_name=self.db_name,
            federation_tls=self.federation_tls,
        )
        other.port, other.base_url = self.port, self.base_url
        other.federation_port, other.federation_url = self.federation_port, self.federation_url
        other.log_path = self.workdir / f"{role}-{self.port}.log"
        return other

    def stop(self) -> int | None:
        _running.discard(self)
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def destroy(self) -> None:
        self.stop()
        if self.database == "postgres" and self.owns_db:
            with contextlib.suppress(psycopg.Error):
                _pg_admin(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def dump_threads(self, timeout: float = 5.0) -> str:
        """Every thread's stack, as ``serve`` writes it to its log on SIGUSR1 (what a request
        that timed out was waiting on). Waits until the dump stops growing."""
        if self.proc is None or self.proc.poll() is not None or not self.log_path.exists():
            return ""
        start = self.log_path.stat().st_size
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        size = start
        while time.monotonic() < deadline:
            time.sleep(0.2)
            grown = self.log_path.stat().st_size
            if grown > start and grown == size:
                break
            size = grown
        with open(self.log_path, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text()[-n:] if self.log_path.exists() else ""

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows from the server's own PostgreSQL database (what it stored, seen from outside)."""
        assert self.database == "postgres", "query() reads a PostgreSQL test server"
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.db_name}") as conn:
            return list(conn.execute(sql, params).fetchall())


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """``check()``'s first truthy value, polled every 0.2 s; fails naming ``what`` after
    ``timeout`` seconds. Tests wait on what the servers store or answer, never on a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)  # polling, with a deadline


# --------------------------------------------------------------------------- test hooks


def waiting_long_polls(base_url: str, user_id: str) -> int:
    """How many ``/sync`` long-polls of ``user_id`` wait in the server process at ``base_url``."""
    r = httpx.get(base_url + "/_dagma/test/waiters", params={"user_id": user_id}, timeout=5.0)
    r.raise_for_status()
    return int(r.json()["waiters"])


def wait_for_waiters(base_url: str, user_id: str, count: int = 1, timeout: float = 15.0) -> None:
    """Return once ``count`` long-polls of ``user_id`` wait in that process: only then does a
    change made next test the wake-up (a poll that registers late would find the change in its
    first pass and answer without ever waiting)."""
    deadline = time.monotonic() + timeout
    seen = waiting_long_polls(base_url, user_id)
    while seen < count:
        assert time.monotonic() < deadline, (
            f"{seen} of {count} long-polls of {user_id} waiting after {timeout}s"
        )
        time.sleep(0.01)  # polling the observable, with a deadline
        seen = waiting_long_polls(base_url, user_id)


def advance_clock(base_url: str, ms: int) -> int:
    """Move the homeserver's clock ``ms`` forward (every process of it); returns the total offset."""
    r = httpx.post(base_url + "/_dagma/test/clock", json={"advance_ms": ms}, timeout=5.0)
    r.raise_for_status()
    return int(r.json()["offset_ms"])


class Politburo:
    """A ``serve politburo`` process next to a :class:`LiveServer`, on an admin listener of its config.

    Call :meth:`add_listener` after ``server.write_config()``, then create and migrate the
    database and start the server (``start`` alone does that only for a config it writes).
    """

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def add_listener(self) -> Politburo:
        config = yaml.safe_load(self.server.config_path.read_text())
        config["listeners"].append(
            {"port": self.port, "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["admin"]}]}
        )
        self.server.config_path.write_text(yaml.safe_dump(config))
        return self

    def start(self, timeout: float = 60.0) -> Politburo:
        log = open(self.server.workdir / "politburo.log", "ab")  # noqa: SIM115 - the process writes it
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "politburo"],
            env=self.server.env(), cwd=str(self.server.workdir), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.server.workdir / "politburo.log").read_text()[-4000:])
            try:
                httpx.get(self.base_url + "/health", timeout=1.0)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("politburo did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None


def start_with_politburo(server: LiveServer) -> Politburo:
    """Start ``server`` (a fresh one) and a Politburo next to it; returns the Politburo."""
    server.write_config()
    politburo = Politburo(server).add_listener()
    server.create_database()
    server.migrate()
    server.start()
    return politburo.start()


class CeleryWorker:
    """A real Celery worker of a :class:`LiveServer`'s homeserver, as in the production layout
    (``celery -A dagma_project worker -Q ...``): the server's config, database and Redis.

    One task at a time (solo pool), its own process group so :meth:`kill` takes it whole;
    ``beat`` embeds the beat scheduler (``-B``), the production layout's ``celery beat``.
    """

    def __init__(self, server: LiveServer, queues: str, *, beat: bool = False, name: str = "worker") -> None:
        self.server = server
        self.queues = queues
        self.beat = beat
        self.log_path = server.workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> CeleryWorker:
        env = {**self.server.env(), "DJANGO_SETTINGS_MODULE": "dagma_project.settings.worker"}
        args = [sys.executable, "-m", "celery", "-A", "dagma_project", "worker", "-Q", self.queues,
                "--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-l", "INFO", "-n", f"{self.log_path.stem}-{secrets.token_hex(3)}@%h"]  # fmt: skip
        if self.beat:
            args += ["-B", "-s", str(self.server.workdir / f"{self.log_path.stem}-beat-schedule")]
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - the worker writes it while running
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not self.log_text(start).count(" ready."):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.proc.returncode}:\n{self.log_text(start)[-4000:]}"
                )
            assert time.monotonic() < deadline, (
                f"worker not ready after {timeout}s:\n{self.log_text(start)[-4000:]}"
            )
            time.sleep(0.1)  # polling the worker's log, with a deadline
        return self

    def purge(self) -> None:
        """Drop every task message waiting in the worker's queues (``celery purge``), as a
        broker restarted without persistence would: only the database rows remain."""
        env = {**self.server.env(), "DJANGO_SETTINGS_MODULE": "dagma_project.settings.worker"}
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "dagma_project", "purge", "-f", "-Q", self.queues],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def log_text(self, offset: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def kill(self) -> None:
        """``kill -9``: the worker dies where it stands (mid-task), as in a crash or an OOM kill."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        """Celery's warm shutdown (SIGTERM): the running task finishes first."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None

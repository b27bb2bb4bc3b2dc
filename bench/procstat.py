"""CPU and memory of a server under test, read from ``/proc`` (Linux only).

A server is its process tree (the process the bench started and its children) plus the
PostgreSQL backends connected to its database: both do the work of a request, so both
are counted. Backends come and go with connection pools, so a sampler thread polls the
set every ``interval`` seconds and keeps each process's last CPU reading: a backend that
exits between two samples loses at most ``interval`` of its time.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (all its threads), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float | None:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * PAGE / 2**20


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def process_name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in cmd if w]
    return " ".join(Path(words[0]).name if i == 0 else w for i, w in enumerate(words[:4]))


@dataclass
class ServerProcesses:
    """The processes of one server under test: its tree and its database's backends."""

    root_pid: int
    db_name: str
    _conn: psycopg.Connection | None = field(default=None, repr=False)

    def backends(self) -> list[int]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(PG_ADMIN, autocommit=True)
        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.db_name,)
        ).fetchall()
        return [int(r[0]) for r in rows]

    def server_pids(self) -> list[int]:
        return process_tree(self.root_pid)

    def rss(self) -> dict[str, float]:
        """RSS (MiB) of each server process (not the database's shared memory)."""
        out: dict[str, float] = {}
        for pid in self.server_pids():
            mb = rss_mb(pid)
            if mb is not None:
                out[f"{pid} {process_name(pid)}"] = mb
        return out

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class CpuMeter:
    """Server + database CPU seconds spent between ``start()`` and ``stop()``."""

    def __init__(self, server: ServerProcesses, interval: float = 0.2) -> None:
        self.server = server
        self.interval = interval
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self, initial: bool = False) -> None:
        pids = [("server", p) for p in self.server.server_pids()]
        pids += [("db", p) for p in self.server.backends()]
        for key in pids:
            value = cpu_seconds(key[1])
            if value is None:
                continue
            if key not in self.first:
                # A backend born during the measurement spent all its time in it.
                self.first[key] = value if initial else 0.0
            self.last[key] = value

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> CpuMeter:
        self._sample(initial=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """``{"server": s, "db": s, "total": s}`` CPU seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        out = {"server": 0.0, "db": 0.0}
        for key, value in self.last.items():
            out[key[0]] += value - self.first[key]
        out["total"] = out["server"] + out["db"]
        return out

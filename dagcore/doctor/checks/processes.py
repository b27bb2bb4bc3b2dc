"""Processes: a fresh heartbeat from each role the layout expects; beat jobs on time; Redis."""

from __future__ import annotations

import redis
from django.conf import settings

from dagcore.actions.heartbeat import list_processes
from dagcore.clock import now_ms
from dagcore.doctor import FAIL, OK, WARN, Verdict
from dagcore.store import operations as ops_store
from dagcore.taskqueue.schedule import BEAT_SCHEDULE

#: A beat job is late when its last start is older than this many intervals (plus a minute).
LATE_INTERVALS = 2.0
LATE_GRACE_MS = 60_000
WORKER_COMMAND = "celery -A dagma_project worker -Q federation,media,push,maintenance"


def expected_roles() -> dict[str, set[str]]:
    """Role -> the heartbeat roles that satisfy it, from the config's listeners and Redis.

    A listener with client/media resources needs Tribune, one with federation/keys the Embassy
    (``serve all`` is both); with a broker, a Celery worker must run the queues. Politburo is
    started on demand, so it is never expected.
    """
    config = settings.DAGMA
    names = {n for listener in config.listeners for n in listener["names"]}
    expected: dict[str, set[str]] = {}
    if names & {"client", "media"}:
        expected["tribune"] = {"tribune", "all"}
    if names & {"federation", "keys"} and config.federation_enabled:
        expected["embassy"] = {"embassy", "all"}
    if config.redis_url:
        expected["worker"] = {"worker"}
    return expected


def _start_command(role: str) -> str:
    return WORKER_COMMAND if role == "worker" else f"python3 manage.py serve {role}"


def check_processes() -> Verdict:
    processes = list_processes()
    alive_roles = {p.role for p in processes if p.alive}
    missing = [role for role, ok in expected_roles().items() if not ok & alive_roles]
    stale = [p for p in processes if not p.alive]
    details = {
        "processes": [
            {"role": p.role, "host": p.host, "pid": p.pid, "version": p.version, "last_seen_ts": p.last_seen_ts,
             "alive": p.alive}
            for p in processes
        ],
        "missing": missing,
    }  # fmt: skip
    if missing:
        now = now_ms()
        stale_text = ", ".join(f"{p.role} pid {p.pid} {(now - p.last_seen_ts) // 1000} s ago" for p in stale)
        summary = f"no live {', '.join(missing)} process"
        if stale_text:
            summary += f" (stale heartbeats: {stale_text})"
        return Verdict(
            "processes", FAIL, summary, fix="; ".join(_start_command(r) for r in missing), details=details
        )
    if stale:
        shown = ", ".join(f"{p.role} pid {p.pid} on {p.host}" for p in stale)
        return Verdict(
            "processes", WARN, f"alive: {', '.join(sorted(alive_roles))}; stopped without a clean exit: {shown}",
            fix="check the logs of those processes (a crash or a kill -9); their rows go after a week",
            details=details,
        )  # fmt: skip
    return Verdict(
        "processes", OK, f"alive: {', '.join(sorted(alive_roles)) or 'none expected'}", details=details
    )


def check_beat() -> Verdict:
    now = now_ms()
    runs = ops_store.list_job_runs()
    # Jobs can only have run since the oldest live process started (a fresh install has run none).
    started = [p.started_ts for p in list_processes() if p.alive]
    up_since = min(started) if started else now
    late: list[str] = []
    failed: list[str] = []
    jobs: dict[str, object] = {}
    for name, (_task, every) in BEAT_SCHEDULE.items():
        allowed = int(every * 1000 * LATE_INTERVALS) + LATE_GRACE_MS
        run = runs.get(name)
        last = run.last_started_ts if run is not None else None
        jobs[name] = {"every_s": every, "last_started_ts": last, "outcome": run.outcome if run else ""}
        if last is None:
            if now - up_since > allowed:
                late.append(f"{name} never ran")
        elif now - last > allowed:
            late.append(f"{name} last ran {(now - last) // 60_000} min ago (every {every / 60:g} min)")
        if run is not None and run.outcome == "failed":
            failed.append(f"{name} failed: {run.message[:100]}")
    if late or failed:
        return Verdict(
            "beat", WARN, "; ".join(late + failed)[:500],
            fix="check that `celery -A dagma_project beat` (or the in-process runner of `serve`) runs; see its log",
            details={"jobs": jobs, "late": late, "failed": failed},
        )  # fmt: skip
    return Verdict("beat", OK, f"{len(BEAT_SCHEDULE)} beat jobs on time", details={"jobs": jobs})


def check_redis() -> Verdict:
    url = settings.DAGMA.redis_url
    if not url:
        return Verdict("redis", OK, "not configured (tasks run in-process)")
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        return Verdict(
            "redis", FAIL, f"cannot reach Redis: {type(exc).__name__}: {str(exc)[:150]}",
            fix="start Redis (`systemctl start redis-server`) or fix `redis` in dagma.yaml",
        )  # fmt: skip
    finally:
        client.close()
    return Verdict("redis", OK, "Redis answers")

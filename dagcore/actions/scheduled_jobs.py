"""The beat schedule as operators see it: each job's last run and outcome, its next run, and
"run now" (the task queued at once, as beat would, audited)."""

from __future__ import annotations

from dataclasses import dataclass

from dagcore.actions.audit import Actor, record_audit
from dagcore.clock import now_ms
from dagcore.http.errors import MatrixError
from dagcore.store import operations as store
from dagcore.taskqueue.dispatch import enqueue
from dagcore.taskqueue.schedule import BEAT_SCHEDULE


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    task: str
    every_ms: int
    last_started_ts: int | None
    last_finished_ts: int | None
    last_success_ts: int | None
    outcome: str
    message: str
    #: When beat runs it next (its last start + its period; None before its first run).
    next_run_ts: int | None
    overdue: bool


def list_scheduled_jobs() -> list[ScheduledJob]:
    runs, now = store.list_job_runs(), now_ms()
    out = []
    for name, (task, every_s) in BEAT_SCHEDULE.items():
        run = runs.get(name)
        every = int(every_s * 1000)
        started = run.last_started_ts if run else None
        nxt = started + every if started is not None else None
        out.append(
            ScheduledJob(
                name=name,
                task=task,
                every_ms=every,
                last_started_ts=started,
                last_finished_ts=run.last_finished_ts if run else None,
                last_success_ts=run.last_success_ts if run else None,
                outcome=run.outcome if run else "",
                message=run.message if run else "",
                next_run_ts=nxt,
                overdue=nxt is not None and now > nxt + 2 * every,
            )
        )
    return out


def do_run_scheduled_job_now(*, name: str, actor: Actor) -> None:
    """Queue a scheduled job's task now (it is idempotent by design, STYLE.md #9)."""
    if name not in BEAT_SCHEDULE:
        raise MatrixError(400, "M_INVALID_PARAM", f"No scheduled job {name!r}")
    task, _ = BEAT_SCHEDULE[name]
    enqueue(task)
    record_audit(actor=actor, action="job_run_now", target=name, params={"task": task})

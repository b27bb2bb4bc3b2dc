"""Task runs leave their metrics and, for beat jobs, their run record (the in-process runner;
Celery workers are covered live in test_metrics_live)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from dagcore.store import operations as operations_store
from dagcore.taskqueue import jobs, runner
from dagcore.tasks import maintenance

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


def runs(task: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("dagma_task_runs_total", {"task": task, "outcome": outcome}) or 0.0


def test_a_beat_job_run_in_process_is_counted_and_recorded() -> None:
    task = "dagcore.tasks.maintenance.expire_uia_sessions"
    before = runs(task, "ok")
    runner.submit(maintenance.expire_uia_sessions.run)  # no runner started: runs here, now
    assert runs(task, "ok") == before + 1
    # Its run record is the beat's (dagcore.taskqueue.jobs: lease, start, end, outcome).
    assert jobs.run_job("expire-uia-sessions", manual=True).ok
    run = operations_store.list_job_runs()["expire-uia-sessions"]
    assert run.outcome == "ok"
    assert run.last_success_ts is not None and run.last_success_ts == run.last_finished_ts
    assert run.last_started_ts is not None and run.last_started_ts <= run.last_success_ts


def test_a_failing_task_is_counted_as_failed_and_its_job_keeps_its_last_success(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task = "dagcore.tasks.maintenance.expire_login_tokens"
    assert jobs.run_job("expire-login-tokens", manual=True).ok
    succeeded = operations_store.list_job_runs()["expire-login-tokens"].last_success_ts

    def expire_login_tokens() -> None:
        raise RuntimeError("the database went away")

    expire_login_tokens.__module__ = "dagcore.tasks.maintenance"  # the beat task's name
    before = runs(task, "failed")
    runner.submit(expire_login_tokens)
    assert runs(task, "failed") == before + 1
    monkeypatch.setattr(maintenance.expire_login_tokens, "run", expire_login_tokens)
    with pytest.raises(RuntimeError):
        jobs.run_job("expire-login-tokens", manual=True)
    run = operations_store.list_job_runs()["expire-login-tokens"]
    assert (run.outcome, run.last_success_ts) == ("failed", succeeded)
    assert "the database went away" in run.message

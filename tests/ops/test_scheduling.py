"""Beat jobs: one runner at a time per job (a database lease), runs recorded, ``run_job``."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagcore.store import scheduled_jobs as store
from dagcore.taskqueue import jobs as scheduled_jobs
from dagcore.taskqueue.schedule import BEAT_SCHEDULE
from tests.support.live import LiveServer, wait_for

# --------------------------------------------------------------------------- the lease


@pytest.mark.django_db
@pytest.mark.sqlite
def test_a_job_lease_goes_to_one_runner_until_released_or_expired() -> None:
    assert store.claim_job_lease("j", owner="a", now=1_000, lease_ms=60_000)
    assert not store.claim_job_lease("j", owner="b", now=2_000, lease_ms=60_000)  # a holds it
    store.finish_job("j", now=3_000, ok=True, message="3 rows", owner="b")  # not b's to free
    assert not store.claim_job_lease("j", owner="b", now=4_000, lease_ms=60_000)
    store.finish_job("j", now=5_000, ok=True, message="3 rows", owner="a")
    run = store.get_job_run("j")
    assert run is not None and (run.outcome, run.message, run.last_success_ts, run.lease_owner) == (
        "ok",
        "3 rows",
        5_000,
        "",
    )
    # Free again, but a beat finds it ran within its period (another beat ran it): skipped.
    assert not store.claim_job_lease("j", owner="b", now=6_000, lease_ms=60_000, min_interval_ms=9_000)
    assert store.claim_job_lease("j", owner="b", now=11_000, lease_ms=60_000, min_interval_ms=9_000)
    # A runner that died keeps its lease only until it expires.
    assert not store.claim_job_lease("j", owner="c", now=70_000, lease_ms=60_000)
    assert store.claim_job_lease("j", owner="c", now=71_001, lease_ms=60_000)


RELEASE = threading.Event()
STARTED = threading.Event()
RUNS: list[str] = []


class BlockingTask:
    """A beat task that waits until the test lets it finish."""

    @staticmethod
    def run() -> int:
        RUNS.append(threading.current_thread().name)
        STARTED.set()
        assert RELEASE.wait(30)
        return 7


class FailingTask:
    @staticmethod
    def run() -> None:
        raise RuntimeError("disk full")


@pytest.fixture
def test_jobs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(BEAT_SCHEDULE, "test-blocking", (f"{__name__}.BlockingTask", 3600.0))
    monkeypatch.setitem(BEAT_SCHEDULE, "test-failing", (f"{__name__}.FailingTask", 3600.0))
    RELEASE.clear()
    STARTED.clear()
    RUNS.clear()
    yield
    RELEASE.set()


@pytest.mark.django_db(transaction=True)
@pytest.mark.sqlite
def test_two_runners_never_run_one_job_at_once_and_both_outcomes_are_recorded(test_jobs) -> None:
    results: list[scheduled_jobs.JobRun] = []
    first = threading.Thread(
        target=lambda: results.append(scheduled_jobs.run_job("test-blocking")), name="beat-1"
    )
    first.start()
    assert STARTED.wait(30)
    # The second beat (another process in production: the lease is in the database).
    second = scheduled_jobs.run_job("test-blocking", manual=True)
    assert not second.ran and "another runner" in second.message
    RELEASE.set()
    first.join(30)
    assert RUNS == ["beat-1"] and results[0].ran and results[0].result == 7
    run = store.get_job_run("test-blocking")
    assert run is not None and run.outcome == "ok" and run.message == "7" and not run.lease_owner
    # Due again only after 90 % of its period (another beat may have just run it) ...
    assert not scheduled_jobs.run_job("test-blocking").ran
    # ... and a failure is recorded as such, the lease freed.
    with pytest.raises(RuntimeError):
        scheduled_jobs.run_job("test-failing")
    run = store.get_job_run("test-failing")
    assert run is not None and run.outcome == "failed" and "disk full" in run.message and not run.lease_owner


@pytest.mark.django_db(transaction=True)
@pytest.mark.sqlite
def test_two_in_process_runners_take_a_due_job_once_and_the_run_frees_it(test_jobs) -> None:
    """What each runner's beat thread does at a tick (two ``serve`` processes of one homeserver)."""
    from dagcore.taskqueue import runner

    RELEASE.set()
    assert runner._claim("test-blocking", "in-process:one")
    assert not runner._claim("test-blocking", "in-process:two")
    runner._run_beat_job("test-blocking", BEAT_SCHEDULE["test-blocking"][0], "in-process:one")
    run = store.get_job_run("test-blocking")
    assert run is not None and run.outcome == "ok" and not run.lease_owner
    assert not runner._claim("test-blocking", "in-process:two")  # it ran within its period


@pytest.mark.django_db(transaction=True)
@pytest.mark.sqlite
def test_celery_beat_sends_a_job_only_when_it_holds_the_lease_and_the_worker_records_it(test_jobs) -> None:
    """Two ``celery beat`` schedulers of one homeserver: the second sends nothing the first sent.
    The sends are captured at Celery's transport boundary; the lease is our database's."""
    from celery.beat import ScheduleEntry

    from dagma_project.beat import LeasedScheduler
    from dagma_project.broker import app

    sent: list[str] = []

    class Captured(LeasedScheduler):
        def apply_async(
            self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kw: Any
        ) -> None:
            sent.append(entry.name)

    def scheduler(tmp: str) -> Captured:
        s = Captured(app=app, schedule_filename=tmp, lazy=True)
        s.setup_schedule()
        return s

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        one, two = scheduler(f"{tmp}/one"), scheduler(f"{tmp}/two")
        entry = ScheduleEntry(
            name="expire-uia-sessions", task=BEAT_SCHEDULE["expire-uia-sessions"][0], schedule=3600.0, app=app
        )
        one.apply_entry(entry)
        two.apply_entry(entry)
        one.close()
        two.close()
    assert sent == ["expire-uia-sessions"]

    # The worker side: the signals record the run the header names, and free the lease.
    from dagcore.tasks.maintenance import expire_uia_sessions

    expire_uia_sessions.apply(headers={"dagma_beat_job": "expire-uia-sessions"})
    run = store.get_job_run("expire-uia-sessions")
    assert run is not None and run.outcome == "ok" and run.message == "0" and not run.lease_owner


# --------------------------------------------------------------------------- a live quick start


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("beat"), database="sqlite", redis=False)
    server.start()
    yield server
    server.destroy()


def job_runs(server: LiveServer) -> dict[str, tuple[Any, ...]]:
    with sqlite3.connect(Path(server.workdir) / "homeserver.db") as conn:
        rows = conn.execute(
            "SELECT name, outcome, last_started_ts, last_finished_ts, lease_owner FROM scheduled_job_runs"
        )
        return {r[0]: r[1:] for r in rows}


@pytest.mark.live
def test_the_in_process_beat_records_each_job_it_runs(quick_start: LiveServer) -> None:
    every = BEAT_SCHEDULE["federation-send-pending"][1]
    run = wait_for(lambda: (r := job_runs(quick_start).get("federation-send-pending")) and r[0] == "ok" and r,
                   "the in-process beat's first run of federation-send-pending", timeout=every * 3)  # fmt: skip
    assert run[1] <= run[2] and run[3] == ""  # started, finished, lease freed


@pytest.mark.live
def test_run_job_runs_one_job_now_and_names_the_jobs_for_an_unknown_one(quick_start: LiveServer) -> None:
    result = quick_start.manage("run_job", "expire-uia-sessions", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"job": "expire-uia-sessions", "ran": True, "ok": True, "result": "0"}
    assert job_runs(quick_start)["expire-uia-sessions"][0] == "ok"

    result = quick_start.manage("run_job", "no-such-job")
    assert result.returncode == 2
    assert b"unknown job 'no-such-job'" in result.stderr and b"expire-uia-sessions" in result.stderr

"""The operators' records every admin surface shares: the audit trail (secrets never kept),
admin jobs run once with their outcome, process heartbeats, check results."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from dagcore.actions import admin_jobs, audit, heartbeat
from dagcore.clock import now_ms
from dagcore.models import AdminJob, AuditEntry
from dagcore.store import operations as store

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


def echo_job(*, job: AdminJob, progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    progress({"done": 1})
    if job.params.get("fail"):
        raise ValueError("asked to fail")
    return {"echoed": job.params["value"]}


def test_an_audit_entry_keeps_who_what_and_counts_but_never_a_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    actor = audit.Actor(user_id="@admin:test", via="console", ip="127.0.0.1")
    with caplog.at_level(logging.INFO, logger="dagma.audit"):
        audit.record_audit(
            actor=actor, action="reset_password", target="@bob:test",
            params={"new_password": "hunter2", "logout_devices": True, "auth": {"access_token": "x"}},
            counts={"tokens": 3},
        )  # fmt: skip
    (entry,) = AuditEntry.objects.all()
    assert entry.params == {
        "new_password": "<redacted>",
        "logout_devices": True,
        "auth": {"access_token": "<redacted>"},
    }
    assert (entry.actor, entry.via, entry.ip, entry.counts, entry.result) == (
        "@admin:test", "console", "127.0.0.1", {"tokens": 3}, "ok"
    )  # fmt: skip
    (record,) = [r for r in caplog.records if r.name == "dagma.audit"]
    assert record.__dict__["audit"]["action"] == "reset_password" and "hunter2" not in repr(record.__dict__)
    assert [e.id for e in audit.list_audit(actor="@admin:test")] == [entry.id]
    assert audit.list_audit(action="other") == []
    assert audit.Actor.cli().user_id.startswith("cli:")


def test_a_job_runs_once_and_keeps_its_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(admin_jobs.JOB_KINDS, "echo", f"{__name__}.echo_job")
    actor = audit.Actor(user_id="@admin:test", via="api")
    job = admin_jobs.do_start_job(kind="echo", target="!room:test", params={"value": 7}, actor=actor)
    admin_jobs.do_run_admin_job(job.job_id)  # no broker in this test: the runner may race us
    done = admin_jobs.get_job(job.job_id)
    assert (done.status, done.result, done.progress) == ("complete", {"echoed": 7}, {"done": 1})
    admin_jobs.do_run_admin_job(job.job_id)  # a second delivery changes nothing
    assert admin_jobs.get_job(job.job_id).finished_ts == done.finished_ts

    failing = admin_jobs.do_start_job(kind="echo", target="x", params={"fail": True}, actor=actor)
    admin_jobs.do_run_admin_job(failing.job_id)
    failed = admin_jobs.get_job(failing.job_id)
    assert failed.status == "failed" and "asked to fail" in failed.error
    assert AuditEntry.objects.filter(action="job:echo", result="failed").count() == 1


def test_an_unknown_job_kind_is_refused() -> None:
    from dagcore.http.errors import MatrixError

    with pytest.raises(MatrixError):
        admin_jobs.do_start_job(kind="nope", target="", params={}, actor=audit.Actor.cli())


def test_heartbeats_tell_live_processes_from_dead_ones() -> None:
    heartbeat.do_beat_once(role="tribune", started_ts=1)
    silent = now_ms() - heartbeat.ALIVE_WITHIN_MS - 1
    store.beat_heart(role="embassy", host="h", pid=1, version="0", started_ts=1, now=silent)
    store.beat_heart(role="worker", host="h", pid=2, version="0", started_ts=1, now=1)  # a week gone
    statuses = {p.role: p.alive for p in heartbeat.list_processes()}
    assert statuses == {"tribune": True, "embassy": False}


def test_the_latest_result_of_each_check() -> None:
    store.insert_check_result(name="disk", status="ok", summary="", details={}, ts=1)
    store.insert_check_result(name="disk", status="warn", summary="81 %", details={}, ts=2)
    store.insert_check_result(name="tls", status="fail", summary="", details={}, ts=1)
    latest = {r.name: r.status for r in store.latest_check_results()}
    assert latest == {"disk": "warn", "tls": "fail"}
    assert [r.name for r in store.latest_check_results(["tls"])] == ["tls"]

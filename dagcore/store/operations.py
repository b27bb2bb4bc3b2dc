"""The operators' records: audit trail, admin jobs, heartbeats, check results, beat runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Max, Q

from dagcore.models import AdminJob, AuditEntry, CheckResult, ProcessHeartbeat, ScheduledJobRun

# --------------------------------------------------------------------------- audit


def insert_audit_entry(
    *,
    ts: int,
    actor: str,
    via: str,
    action: str,
    target: str,
    params: Mapping[str, Any],
    counts: Mapping[str, Any],
    result: str,
    error: str,
    ip: str,
) -> AuditEntry:
    return AuditEntry.objects.create(
        ts=ts, actor=actor[:255], via=via, action=action[:64], target=target[:512], params=dict(params),
        counts=dict(counts), result=result, error=error, ip=ip[:64],
    )  # fmt: skip


def list_audit_entries(
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    via: str | None = None,
    since_ts: int | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Newest first; ``before_id`` pages back. ``target`` matches a substring."""
    qs = AuditEntry.objects.all()
    if actor:
        qs = qs.filter(actor=actor)
    if action:
        qs = qs.filter(action=action)
    if target:
        qs = qs.filter(target__contains=target)
    if via:
        qs = qs.filter(via=via)
    if since_ts is not None:
        qs = qs.filter(ts__gte=since_ts)
    if before_id is not None:
        qs = qs.filter(id__lt=before_id)
    return list(qs.order_by("-id")[:limit])


def get_dropped_extremities(room_id: str) -> set[str]:
    """Event IDs an operator dropped from the room's forward extremities (the admin API's
    ``DELETE .../forward_extremities``): the audit entry is the drop's only record."""
    rows = AuditEntry.objects.filter(
        action="delete_forward_extremities", target=room_id, result="ok"
    ).values_list("params", flat=True)
    return {event_id for params in rows for event_id in (params or {}).get("dropped", [])}


# --------------------------------------------------------------------------- admin jobs


def insert_admin_job(
    *, job_id: str, kind: str, target: str, params: Mapping[str, Any], created_by: str, created_ts: int
) -> AdminJob:
    return AdminJob.objects.create(
        job_id=job_id, kind=kind, target=target[:512], params=dict(params), created_by=created_by[:255],
        created_ts=created_ts,
    )  # fmt: skip


def get_admin_job(job_id: str) -> AdminJob | None:
    return AdminJob.objects.filter(job_id=job_id).first()


def list_admin_jobs(
    *, kind: str | None = None, target: str | None = None, limit: int = 100
) -> list[AdminJob]:
    qs = AdminJob.objects.all()
    if kind:
        qs = qs.filter(kind=kind)
    if target:
        qs = qs.filter(target=target)
    return list(qs.order_by("-id")[:limit])


def claim_admin_job(job_id: str, *, now: int) -> bool:
    """``scheduled`` -> ``active``; False if another runner took it (a job runs once)."""
    return bool(
        AdminJob.objects.filter(job_id=job_id, status="scheduled").update(status="active", started_ts=now)
    )


def update_admin_job(job_id: str, **fields: Any) -> None:
    """Set ``status``, ``progress``, ``result``, ``error``, ``finished_ts``."""
    AdminJob.objects.filter(job_id=job_id).update(**fields)


# --------------------------------------------------------------------------- heartbeats


def beat_heart(*, role: str, host: str, pid: int, version: str, started_ts: int, now: int) -> None:
    updated = ProcessHeartbeat.objects.filter(role=role, host=host, pid=pid).update(last_seen_ts=now)
    if not updated:
        ProcessHeartbeat.objects.update_or_create(
            role=role, host=host, pid=pid,
            defaults={"version": version, "started_ts": started_ts, "last_seen_ts": now},
        )  # fmt: skip


def list_heartbeats(*, seen_since: int | None = None) -> list[ProcessHeartbeat]:
    qs = ProcessHeartbeat.objects.all()
    if seen_since is not None:
        qs = qs.filter(last_seen_ts__gte=seen_since)
    return list(qs.order_by("role", "host", "pid"))


def delete_heartbeat(*, role: str, host: str, pid: int) -> None:
    ProcessHeartbeat.objects.filter(role=role, host=host, pid=pid).delete()


def delete_heartbeats_before(ts: int) -> int:
    return int(ProcessHeartbeat.objects.filter(last_seen_ts__lt=ts).delete()[0])


# --------------------------------------------------------------------------- check results


def insert_check_result(*, name: str, status: str, summary: str, details: Mapping[str, Any], ts: int) -> None:
    CheckResult.objects.create(name=name[:128], status=status, summary=summary, details=dict(details), ts=ts)


def latest_check_results(names: list[str] | None = None, *, prefix: str | None = None) -> list[CheckResult]:
    """The newest result of each check name (of ``names``, or starting with ``prefix``), by name."""
    qs = CheckResult.objects.all()
    if names is not None:
        qs = qs.filter(name__in=names)
    if prefix is not None:
        qs = qs.filter(name__startswith=prefix)
    newest = list(qs.values("name").annotate(newest=Max("ts")))
    if not newest:
        return []
    cond = Q()
    for row in newest:
        cond |= Q(name=row["name"], ts=row["newest"])
    latest: dict[str, CheckResult] = {}
    for result in CheckResult.objects.filter(cond).order_by("name", "-id"):
        latest.setdefault(result.name, result)
    return list(latest.values())


def delete_check_results_before(ts: int) -> int:
    return int(CheckResult.objects.filter(ts__lt=ts).delete()[0])


# --------------------------------------------------------------------------- beat runs


def record_job_start(name: str, *, now: int) -> None:
    ScheduledJobRun.objects.update_or_create(name=name, defaults={"last_started_ts": now})


def record_job_end(name: str, *, now: int, ok: bool, message: str = "") -> None:
    fields: dict[str, Any] = {
        "last_finished_ts": now,
        "outcome": "ok" if ok else "failed",
        "message": message,
    }
    if ok:
        fields["last_success_ts"] = now
    updated = ScheduledJobRun.objects.filter(name=name).update(**fields)
    if not updated:
        ScheduledJobRun.objects.create(name=name, **fields)


def list_job_runs() -> dict[str, ScheduledJobRun]:
    return {run.name: run for run in ScheduledJobRun.objects.all()}

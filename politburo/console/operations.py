"""Console pages of the operations records: the audit trail (read-only) and jobs (the beat
schedule with "run now", and admin jobs with their status pages)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpResponse, HttpResponseBase

from dagcore.actions import admin_jobs, scheduled_jobs
from dagcore.actions.audit import VIAS, list_audit
from politburo.console.page import (
    ConsoleError,
    ConsoleRequest,
    console_actor,
    console_page,
    redirect_with_notice,
    render_page,
)

AUDIT_PAGE = 50


@console_page(methods=("GET",))
def audit(request: ConsoleRequest) -> HttpResponse:
    """GET /audit — who changed what, newest first; filter by actor, action, target, via."""
    filters = {k: request.GET.get(k, "").strip()[:255] for k in ("actor", "action", "target", "via")}
    if filters["via"] not in ("", *VIAS):
        raise ConsoleError(400, f"via must be one of {', '.join(VIAS)}.")
    before = request.GET.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) < 19 else None
    entries = list_audit(
        **{k: v or None for k, v in filters.items()}, before_id=before_id, limit=AUDIT_PAGE + 1
    )
    more = len(entries) > AUDIT_PAGE
    entries = entries[:AUDIT_PAGE]
    kept = {k: v for k, v in filters.items() if v}
    return render_page(
        request,
        "politburo/audit.html",
        {
            "entries": entries,
            "filters": filters,
            "vias": VIAS,
            "older_url": f"/audit?{urlencode({**kept, 'before': entries[-1].id})}"
            if more and entries
            else "",
            "newest_url": f"/audit?{urlencode(kept)}" if before_id is not None else "",
        },
        title="Audit",
    )


@console_page
def jobs(request: ConsoleRequest) -> HttpResponseBase:
    """GET /jobs — scheduled jobs (last and next run, outcome) and admin jobs; POST: run a
    scheduled job now."""
    if request.method == "POST":
        name = request.POST.get("job", "")
        scheduled_jobs.do_run_scheduled_job_now(name=name, actor=console_actor(request))
        return redirect_with_notice("/jobs", f"Queued {name}.")
    return render_page(
        request,
        "politburo/jobs/list.html",
        {"scheduled": scheduled_jobs.list_scheduled_jobs(), "admin_jobs": admin_jobs.list_jobs(limit=100)},
        title="Jobs",
    )


@console_page(methods=("GET",))
def job_detail(request: ConsoleRequest, job_id: str) -> HttpResponse:
    """GET /jobs/{jobId} — one admin job's status, progress and result."""
    job = admin_jobs.get_job(job_id)
    return render_page(request, "politburo/jobs/detail.html", {"job": job}, title=f"Job {job.job_id}")

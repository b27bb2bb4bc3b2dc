"""Admin jobs (Celery queue ``maintenance``): thin, they reload the job row and run it."""

from __future__ import annotations

from celery import shared_task

from dagcore.actions.admin_jobs import do_run_admin_job, do_run_scheduled_jobs


@shared_task(name="dagcore.tasks.admin_jobs.run_admin_job")
def run_admin_job(job_id: str) -> None:
    do_run_admin_job(job_id)


@shared_task(name="dagcore.tasks.admin_jobs.run_scheduled_jobs")
def run_scheduled_jobs() -> int:
    """Beat: jobs whose queued run was lost."""
    return do_run_scheduled_jobs()

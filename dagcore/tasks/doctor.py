"""Nightly ``doctor`` (beat job ``doctor-nightly``, queue ``maintenance``): thin."""

from __future__ import annotations

from celery import shared_task

from dagcore.doctor.run import overall
from dagcore.doctor.run import run_doctor as do_run_doctor


@shared_task(name="dagcore.tasks.doctor.run_doctor")
def run_doctor() -> str:
    """Every check, each result kept (``doctor.<check>``); returns the overall status."""
    return overall(do_run_doctor())

"""``manage.py run_job NAME [--json]``: run one beat job now, in this process.

NAME is a key of the beat schedule (``dagcore.taskqueue.schedule.BEAT_SCHEDULE``; an unknown
name lists them). The run takes the job's database lease like a beat does, so it never runs
beside a beat's run of the same job, and is recorded (``scheduled_job_runs``) like one.
Exit status: 0 the job ran and succeeded, 1 it failed or another runner holds it, 2 bad usage.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from dagcore.management.commands.backup import logs_to_stderr
from dagcore.taskqueue import jobs as scheduled_jobs


class Command(BaseCommand):
    help = "Run one scheduled (beat) job now: manage.py run_job NAME."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="a beat job name, e.g. expire-uia-sessions")
        parser.add_argument("--json", action="store_true", help="print the outcome as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["json"]:
            logs_to_stderr()
        name = options["name"]
        try:
            run = scheduled_jobs.run_job(name, manual=True)
        except scheduled_jobs.UnknownJob as exc:
            self.stderr.write(f"run_job: {exc}")
            sys.exit(2)
        except Exception as exc:
            out = {"job": name, "ran": True, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self._emit(options, out, f"{name}: failed: {out['error']}")
            sys.exit(1)
        out = {"job": name, "ran": run.ran, "ok": run.ok, "result": run.message}
        self._emit(
            options,
            out,
            f"{name}: {'done' if run.ran else run.message}"
            + (f" ({run.message})" if run.ran and run.message else ""),
        )
        sys.exit(0 if run.ran else 1)

    def _emit(self, options: dict[str, Any], out: dict[str, Any], text: str) -> None:
        self.stdout.write(json.dumps(out) if options["json"] else text)

"""``python3 manage.py doctor [--json] [--only CHECK,...]``: the daily health checks.

One line per check (OK / WARN / FAIL, what, the command that fixes it); exit 0 / 1 / 2 when
the worst is ok / warn / fail. Results are kept for the dashboard and metrics.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from dagcore.doctor import exit_code
from dagcore.doctor.run import CHECKS, UnknownCheck, overall, run_doctor


class Command(BaseCommand):
    help = "Check this homeserver's health: each check OK/WARN/FAIL with its fix; exit 0/1/2."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the verdicts as one JSON object")
        parser.add_argument("--only", default="", help=f"comma-separated checks of: {', '.join(CHECKS)}")

    def handle(self, *args: Any, **options: Any) -> None:
        only = [n.strip() for n in options["only"].split(",") if n.strip()] or None
        try:
            verdicts = run_doctor(only=only)
        except UnknownCheck as exc:
            sys.stderr.write(f"doctor: {exc}\n")
            sys.exit(2)
        status = overall(verdicts)
        if options["json"]:
            sys.stdout.write(
                json.dumps({"status": status, "checks": [v.as_json() for v in verdicts]}, indent=2) + "\n"
            )
        else:
            for v in verdicts:
                line = f"{v.status.upper():<4}  {v.name:<14} {v.summary}"
                if v.fix:
                    line += f"\n      {'':<14} fix: {v.fix}"
                sys.stdout.write(line + "\n")
            sys.stdout.write(f"\n{status.upper()}\n")
        sys.stdout.flush()
        sys.exit(exit_code(status))

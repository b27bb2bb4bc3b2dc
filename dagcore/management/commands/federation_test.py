"""``python3 manage.py federation_test SERVER_NAME [--json]``: can other servers reach it?

Each step of server discovery, TLS, keys and version with its verdict (as the console's
federation tester shows them); exit 0 / 1 / 2 when the worst is ok / warn / fail.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from dagcore.doctor import exit_code
from dagcore.doctor.federation_tester import run_federation_test


class Command(BaseCommand):
    help = "Test another server's (or our own) federation set-up, step by step; exit 0/1/2."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("server_name", help="the server name to test, e.g. example.org")
        parser.add_argument("--json", action="store_true", help="print the report as one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        report = run_federation_test(options["server_name"])
        if options["json"]:
            sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
        else:
            sys.stdout.write(f"federation test of {report.server_name}\n")
            for step in report.steps:
                sys.stdout.write(f"{step.status.upper():<4}  {step.name:<18} {step.summary}\n")
            sys.stdout.write(f"\n{report.status.upper()}\n")
        sys.stdout.flush()
        sys.exit(exit_code(report.status))

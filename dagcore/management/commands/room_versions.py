"""``manage.py room_versions [--json]``: rooms per room version, their local members, and a
flag on versions worth upgrading (``old``: v1-v5) or unknown to the spec (``unstable``)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from dagcore.actions.room_versions_admin import get_room_versions_report
from dagcore.cli.json_output import logs_to_stderr


class Command(BaseCommand):
    help = "Count rooms per room version (with local members); flag old (v1-v5) and unstable versions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON (with the room IDs)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["json"]:
            logs_to_stderr()
        report = get_room_versions_report()
        if options["json"]:
            self.stdout.write(json.dumps({"versions": report}, indent=2))
            return
        if not report:
            self.stdout.write("no rooms")
            return
        self.stdout.write(f"{'version':<10} {'rooms':>7} {'local members':>14}  note")
        for row in report:
            note = {"old": "old: upgrade with manage.py upgrade_room --all-below 6",
                    "unstable": "unstable: not a version of the spec"}.get(row["flag"] or "", "")  # fmt: skip
            self.stdout.write(f"{row['version']:<10} {row['rooms']:>7} {row['local_members']:>14}  {note}")

"""``manage.py upgrade_room ROOM|--all-below N --version V [--dry-run] [--json]``

Upgrades rooms to room version ``V`` with the spec's room upgrade, performed by each room's
local member with the most power (who must be allowed to send ``m.room.tombstone``). The
plan (room, versions, who upgrades, or why a room cannot be) is printed first; ``--dry-run``
stops there. Each upgrade (or failure) is an audit entry.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dagcore.actions.audit import Actor
from dagcore.actions.room_versions_admin import (
    check_upgrade_planned_room,
    get_room_versions_report,
    plan_upgrade,
)
from dagcore.cli.json_output import logs_to_stderr
from dagcore.http.errors import MatrixError


class Command(BaseCommand):
    help = "Upgrade a room (or every room below a version) to a new room version; plans first."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # Our --version (the room version) replaces Django's (the framework's version).
        kwargs["conflict_handler"] = "resolve"
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room", nargs="?", help="the room ID")
        parser.add_argument("--all-below", type=int, metavar="N", help="every room of a version below N")
        parser.add_argument(
            "--version", required=True, dest="to_version", help="the new room version, e.g. 12"
        )
        parser.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["room"]) == (options["all_below"] is not None):
            raise CommandError("give a room ID or --all-below N (not both)")
        if options["json"]:
            logs_to_stderr()
        if options["room"]:
            rooms = [options["room"]]
        else:
            rooms = [
                room_id for row in get_room_versions_report()
                if row["version"].isdigit() and int(row["version"]) < options["all_below"]
                for room_id in row["room_ids"]
            ]  # fmt: skip
        results: list[dict[str, Any]] = []
        failed = False
        try:
            plans = [plan_upgrade(room_id=room_id, to_version=options["to_version"]) for room_id in rooms]
        except MatrixError as exc:
            raise CommandError(f"{exc.error} ({exc.errcode})") from None
        actor = Actor.cli()
        for plan in plans:
            entry = plan.as_json()
            if not options["json"]:
                who = f"by {plan.upgrader}" if plan.upgrader else f"cannot: {plan.refusal}"
                self.stdout.write(f"{plan.room_id}: v{plan.from_version} -> v{plan.to_version} {who}")
            if not options["dry_run"] and plan.upgrader is not None:
                try:
                    entry["new_room_id"] = check_upgrade_planned_room(plan=plan, actor=actor)
                    if not options["json"]:
                        self.stdout.write(f"  upgraded: {entry['new_room_id']}")
                except MatrixError as exc:
                    entry["error"] = exc.error
                    failed = True
                    self.stderr.write(f"  failed: {exc.error}")
            results.append(entry)
        if options["json"]:
            self.stdout.write(json.dumps({"dry_run": options["dry_run"], "rooms": results}, indent=2))
        elif not rooms:
            self.stdout.write("no rooms to upgrade")
        if failed:
            raise CommandError("some upgrades failed (see above)")

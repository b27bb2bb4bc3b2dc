"""``manage.py purge_history ROOM|--all --before DATE|EVENT_ID [--delete-local-events] [--dry-run] [--json]``

Removes a room's timeline before a date (``2026-11-01``, ``30d``, ``"30 days ago"``) or an
event, as ``dagcore.actions.purge_history`` explains (Synapse's Purge History API). It
always previews first and prints the counts; ``--dry-run`` stops there. The purge then
runs on the preview's boundary, so it removes at most what was printed. Each room's purge
(and each dry run) is one audit entry.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dagcore.actions import purge_history as purge
from dagcore.actions.audit import Actor
from dagcore.actions.room_admin import list_room_ids
from dagcore.cli.json_output import logs_to_stderr
from dagcore.http.errors import MatrixError


class Command(BaseCommand):
    help = "Purge a room's (or every room's) history before a date or an event; previews first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room", nargs="?", help="the room ID (!abc:example.com)")
        parser.add_argument("--all", action="store_true", help="every room this server knows (dates only)")
        parser.add_argument(
            "--before", required=True, help="2026-11-01, an ISO date-time, 30d, '30 days ago', or an event ID"
        )
        parser.add_argument(
            "--delete-local-events", action="store_true", help="also remove events sent by local users"
        )
        parser.add_argument("--dry-run", action="store_true", help="print what would go; change nothing")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["room"]) == bool(options["all"]):
            raise CommandError("give a room ID or --all (not both)")
        if options["json"]:
            logs_to_stderr()
        try:
            kind, value = purge.parse_before(options["before"])
            if options["all"] and kind == "event":
                raise CommandError("--all takes a date: an event belongs to one room")
            rooms = list_room_ids() if options["all"] else [options["room"]]
            actor = Actor.cli()
            results = []
            for room_id in rooms:
                preview = purge.get_purge_preview(
                    room_id=room_id,
                    before_ts=value if kind == "ts" else None,  # type: ignore[arg-type]
                    before_event_id=value if kind == "event" else None,  # type: ignore[arg-type]
                    delete_local_events=options["delete_local_events"],
                )
                entry: dict[str, Any] = preview.as_json()
                if options["dry_run"]:
                    purge.record_purge_dry_run(preview=preview, actor=actor)
                else:
                    entry["deleted"] = purge.check_purge_history(preview=preview, actor=actor)
                    entry["problems"] = purge.check_room_integrity(room_id=room_id)
                results.append(entry)
                if not options["json"]:
                    self._print(entry, dry_run=options["dry_run"])
        except MatrixError as exc:
            raise CommandError(f"{exc.error} ({exc.errcode})") from None
        if options["json"]:
            self.stdout.write(json.dumps({"dry_run": options["dry_run"], "rooms": results}, indent=2))
        if any(entry.get("problems") for entry in results):
            raise CommandError("the purge left a room inconsistent (see problems above)")

    def _print(self, entry: dict[str, Any], *, dry_run: bool) -> None:
        counts = entry["counts"]
        head = "would remove" if dry_run else "preview"
        stop = entry["boundary_event_id"] or "the room's latest event"
        self.stdout.write(
            f"{entry['room_id']}: {head} {counts['events']} events; take out of the timeline but keep "
            f"{counts['state_events']} state events and {counts['local_events_kept']} local users' events; "
            f"stops at {stop} (stream position {entry['boundary']['max_stream']})"
        )
        if "deleted" in entry:
            done = entry["deleted"]
            self.stdout.write(
                f"  purged: {done['events']} events removed, {done['state_events']} state events and "
                f"{done['local_events_kept']} local events out of the timeline, {done['state_groups']} state "
                f"groups and {done['backward_extremities']} old gaps dropped, {done['gaps']} gaps recorded"
            )
            for problem in entry["problems"]:
                self.stderr.write(f"  problem: {problem}")

"""``manage.py compromised --since TIME [--dry-run] [--json]``: our signing key leaked at TIME
(``dagcore.actions.signing_keys.do_compromised``): it is published as expired at TIME, a new key
signs, every access/refresh token and console session is revoked, our users' events since TIME
are listed and the remaining manual steps printed."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dagcore.actions import signing_keys as actions
from dagcore.actions.audit import Actor
from dagcore.cli.when import parse_point_in_time
from dagcore.clock import now_ms


class Command(BaseCommand):
    help = "Our signing key was compromised at TIME: expire it then, rotate, revoke every session."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since", required=True, help="when it leaked: 2026-01-31T12:00Z, '2 days ago', ms"
        )
        parser.add_argument("--dry-run", action="store_true", help="show what would happen, change nothing")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            since = parse_point_in_time(options["since"], now=now_ms())
            report = actions.do_compromised(actor=Actor.cli(), since_ts=since, dry_run=options["dry_run"])
        except (ValueError, actions.KeyAdminError) as exc:
            raise CommandError(str(exc), returncode=2) from None
        if options["json"]:
            self.stdout.write(json.dumps(asdict(report), sort_keys=True))
            return
        head = "[dry run] would" if report.dry_run else "Done:"
        lines = [
            f"{head} expire {', '.join(report.expired)} at {report.since_ts}"
            + (f"; {report.new_key_id} signs from now on. {report.key_file}" if report.new_key_id else ""),
            f"{'Would revoke' if report.dry_run else 'Revoked'} {report.access_tokens} access tokens, "
            f"{report.refresh_tokens} refresh tokens" + f", {report.console_sessions} console sessions",
            f"Events our users sent since {report.since_ts} (sender, room, count, first ts, last ts):",
        ]
        lines += [
            f"  {e['sender']}  {e['room_id']}  {e['count']}  {e['first_ts']}  {e['last_ts']}"
            for e in report.events
        ]
        if not report.events:
            lines.append("  none")
        if report.servers:
            lines.append(
                "Servers sharing rooms with us (rooms): " + ", ".join(f"{n} ({c})" for n, c in report.servers)
            )
        lines.append("Remaining steps:")
        lines += [f"  [ ] {step}" for step in report.checklist]
        self.stdout.write("\n".join(lines))

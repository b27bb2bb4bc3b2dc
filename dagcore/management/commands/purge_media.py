"""``manage.py purge_media --before 30d [--size-gt 10M] [--local|--remote] [--keep-profiles]
[--dry-run] [--json]``: delete media last accessed before a time (``dagcore.actions.media_admin``)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dagcore.actions import media_admin
from dagcore.actions.audit import Actor
from dagcore.cli.when import parse_point_in_time, parse_size
from dagcore.clock import now_ms
from dagcore.http.errors import MatrixError


class Command(BaseCommand):
    help = (
        "Delete media last accessed before a time: local media (quarantined and protected media "
        "are kept; avatars too with --keep-profiles) and the cache of other servers' media. "
        "Prints the items, files and bytes freed; --dry-run counts the same selection."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--before", required=True, help="30d, '30 days ago', 2026-01-31 or ms since 1970")
        parser.add_argument("--size-gt", default="0", help="only media larger than this (10M, 512K, bytes)")
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--local", action="store_true", help="only our users' uploads")
        which.add_argument("--remote", action="store_true", help="only the cache of other servers' media")
        parser.add_argument("--keep-profiles", action="store_true", help="keep user and room avatars")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            before = parse_point_in_time(options["before"], now=now_ms())
            size_gt = parse_size(options["size_gt"])
        except ValueError as exc:
            raise CommandError(str(exc), returncode=2) from None
        try:
            result = media_admin.do_purge_media(
                actor=Actor.cli(),
                before_ts=before,
                size_gt=size_gt,
                local=not options["remote"],
                remote=not options["local"],
                keep_profiles=options["keep_profiles"],
                dry_run=options["dry_run"],
            )
        except MatrixError as exc:
            raise CommandError(exc.error, returncode=2) from None
        out = {"dry_run": result.dry_run, "before_ts": before, **result.counts()}
        if options["json"]:
            self.stdout.write(json.dumps(out, sort_keys=True))
            return
        verb = "would free" if result.dry_run else "freed"
        self.stdout.write(
            f"{'[dry run] ' if result.dry_run else ''}{result.local_media} local and {result.remote_media} "
            f"remote media last accessed before {before}: {verb} {result.files} files, {result.bytes} bytes"
            + (f" ({result.kept_avatars} avatars kept)" if result.kept_avatars else "")
        )

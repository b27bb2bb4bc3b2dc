"""``manage.py backup create DIR [--no-media] [--json]`` and ``backup verify DIR [--sample N] [--json]``.

``create`` writes a restorable backup (database dump, media, signing keys, config, manifest:
see ``dagcore.actions.backup``) into a new or empty directory. ``verify`` restores it into a
scratch database and checks it; it prints one verdict, OK / WARN / FAIL, and exits 0 / 1 / 2.
Bad usage exits 2 with one line on stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from dagcore.actions import backup as backup_actions
from dagcore.actions.audit import Actor


def logs_to_stderr() -> None:
    """With ``--json``, stdout is the one JSON document: the JSON log lines go to stderr."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


class Command(BaseCommand):
    help = "Make a backup (create) or prove one restores (verify)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="write a backup into DIR (new or empty)")
        create.add_argument("dir")
        create.add_argument("--no-media", action="store_true", help="list media in the manifest, copy none")
        create.add_argument("--json", action="store_true", help="print the manifest as JSON")
        verify = sub.add_parser(
            "verify", help="restore the backup in DIR into a scratch database and check it"
        )
        verify.add_argument("dir")
        verify.add_argument(
            "--sample", type=int, default=None, help="check N random media blobs (default all)"
        )
        verify.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["json"]:
            logs_to_stderr()
        if options["action"] == "create":
            sys.exit(self._create(options))
        sys.exit(self._verify(options))

    def _create(self, options: dict[str, Any]) -> int:
        dest = Path(options["dir"]).resolve()
        try:
            manifest = backup_actions.do_create_backup(
                dest=dest, include_media=not options["no_media"], actor=Actor.cli()
            )
        except backup_actions.BackupError as exc:
            self.stderr.write(f"backup create: {exc}")
            return 2
        if options["json"]:
            self.stdout.write(json.dumps(manifest, sort_keys=True))
        else:
            db = manifest["database"]
            media = manifest["media"]
            self.stdout.write(
                f"backup written to {dest}: {db['engine']} dump ({len(db['row_counts'])} tables, "
                f"{sum(db['row_counts'].values())} rows, migration {db['latest_migration']}), "
                f"{len(media['blobs'])} media blobs {'copied' if media['copied'] else 'listed'}, "
                f"keys {', '.join(manifest['keys']['verify_keys'])}; "
                f"secrets in the config: {', '.join(manifest['config']['secret_keys']) or 'none'}"
            )
            if media["missing_at_backup"]:
                self.stderr.write(
                    f"warning: {len(media['missing_at_backup'])} referenced media blobs were missing"
                )
        return 0

    def _verify(self, options: dict[str, Any]) -> int:
        if options["sample"] is not None and options["sample"] < 0:
            self.stderr.write("backup verify: --sample must be 0 or more")
            return 2
        src = Path(options["dir"]).resolve()
        if not src.is_dir():
            self.stderr.write(f"backup verify: {src} is not a directory")
            return 2
        report = backup_actions.check_backup(src=src, sample=options["sample"])
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), sort_keys=True))
        else:
            for f in report.findings:
                self.stdout.write(f"{f.status.upper():4} {f.name}: {f.message}")
            self.stdout.write(f"verdict: {report.status.upper()}")
        return report.exit_code

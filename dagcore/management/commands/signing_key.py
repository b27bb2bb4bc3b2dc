"""``manage.py signing_key list|rotate|export|import [--json] [--dry-run]``: our federation
signing keys (``dagcore.actions.signing_keys``). Every running process picks a change up within
a few seconds, without a restart."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dagcore.actions import signing_keys as actions
from dagcore.actions.audit import Actor
from dagcore.cli.when import parse_point_in_time
from dagcore.clock import now_ms


class Command(BaseCommand):
    help = "Our signing keys: list (beside what /_matrix/key/v2/server publishes), rotate, export, import."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        p = sub.add_parser("list", help="our keys beside what our key endpoint publishes")
        p.add_argument("--no-fetch", action="store_true", help="do not ask our Embassy what it publishes")
        p.add_argument("--json", action="store_true")
        p = sub.add_parser("rotate", help="a new key signs from now on; the old one stays published as old")
        p.add_argument("--lost", action="append", default=[], metavar="KEY_ID",
                       help="a key whose private half is lost: keep publishing its public half")  # fmt: skip
        p.add_argument("--public-key", action="append", default=[], metavar="BASE64",
                       help="the public half of the --lost key of the same position, if not known here")  # fmt: skip
        p.add_argument("--lost-expired", default=None, help="when the lost key stopped signing (default now)")
        p.add_argument("--dry-run", action="store_true")
        p.add_argument("--json", action="store_true")
        p = sub.add_parser("export", help="write Synapse's key file and old_signing_keys section")
        p.add_argument("--out", required=True, help="signing key file to create (mode 0600)")
        p.add_argument("--old-keys-out", help="YAML file for the old_signing_keys section")
        p.add_argument("--json", action="store_true")
        p = sub.add_parser("import", help="take over a Synapse server's keys (it keeps its server name)")
        p.add_argument("--key-file", required=True, help="Synapse's *.signing.key")
        p.add_argument("--synapse-config", help="Synapse's homeserver.yaml (its old_signing_keys)")
        p.add_argument("--dry-run", action="store_true")
        p.add_argument("--json", action="store_true")

    def _print(self, options: dict[str, Any], data: Any, text: str) -> None:
        self.stdout.write(json.dumps(data, sort_keys=True) if options.get("json") else text)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, "_" + options["action"])(options)
        except actions.KeyAdminError as exc:
            raise CommandError(str(exc), returncode=2) from None

    def _list(self, options: dict[str, Any]) -> None:
        data = actions.key_overview(fetch=not options["no_fetch"])
        lines = [f"Signing keys of {data['server_name']}:"]
        for k in data["keys"]:
            lines.append(
                f"  {k['key_id']}  {k['state']:7}  created {k['created_ts']}  expired_ts {k['expired_ts']}"
                f"  private half {'yes' if k['private'] else 'no'}  ({k['origin']})"
                + (f"  published: {k['published']}" if "published" in k else "")
            )
        pub = data.get("published")
        if pub is not None and not pub["ok"]:
            lines.append(f"Our key endpoint did not answer: {pub['error']}")
        elif pub is not None:
            ans = pub["answer"]
            lines.append(f"/_matrix/key/v2/server publishes verify_keys {sorted(ans.get('verify_keys', {}))}, "
                         f"old_verify_keys {sorted(ans.get('old_verify_keys', {}))}")  # fmt: skip
        self._print(options, data, "\n".join(lines))

    def _rotate(self, options: dict[str, Any]) -> None:
        now = now_ms()
        try:
            lost_expired = (
                parse_point_in_time(options["lost_expired"], now=now) if options["lost_expired"] else now
            )
        except ValueError as exc:
            raise CommandError(str(exc), returncode=2) from None
        if len(options["public_key"]) > len(options["lost"]):
            raise CommandError("--public-key is given per --lost key", returncode=2)
        publics = options["public_key"] + [None] * (len(options["lost"]) - len(options["public_key"]))
        lost = [
            actions.check_lost_key(key_id=kid, public_key=pk, expired_ts=lost_expired)
            for kid, pk in zip(options["lost"], publics, strict=True)
        ]
        result = actions.do_rotate_signing_key(actor=Actor.cli(), dry_run=options["dry_run"], lost=lost)
        if result.dry_run:
            text = f"[dry run] would expire {result.expired} at {result.expired_ts} and sign with a new key"
        else:
            text = (f"{result.new_key_id} signs from now on; {', '.join(result.expired) or 'no key'} "
                    f"published as old with expired_ts {result.expired_ts}. {result.key_file}")  # fmt: skip
        if result.lost:
            text += f"\nLost keys published (public half only): {', '.join(result.lost)}"
        self._print(options, asdict(result), text)

    def _export(self, options: dict[str, Any]) -> None:
        out = Path(options["out"])
        old_out = Path(options["old_keys_out"]) if options["old_keys_out"] else None
        data = actions.do_export_synapse_keys(actor=Actor.cli(), key_out=out, old_keys_out=old_out)
        text = f"Wrote {out}."
        if old_out is None and data["old_signing_keys"]:
            text += " Add to Synapse's homeserver.yaml:\n" + yaml.safe_dump(
                {"old_signing_keys": data["old_signing_keys"]}
            )
        elif old_out is not None:
            text += f" Wrote the old_signing_keys section to {old_out}."
        self._print(options, data, text)

    def _import(self, options: dict[str, Any]) -> None:
        result = actions.do_import_synapse_keys(
            actor=Actor.cli(),
            key_file=Path(options["key_file"]),
            synapse_config=Path(options["synapse_config"]) if options["synapse_config"] else None,
            dry_run=options["dry_run"],
        )
        text = (f"{'[dry run] ' if result.dry_run else ''}{result.key_id} signs from now on; old keys "
                f"imported: {', '.join(result.old_keys) or 'none'}; our previous key(s) "
                f"{', '.join(result.expired) or 'none'} published as old. {result.key_file}")  # fmt: skip
        self._print(options, asdict(result), text)

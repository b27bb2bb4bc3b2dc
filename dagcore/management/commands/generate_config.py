"""``manage.py generate_config --server-name NAME [--out FILE]``: a config and a fresh signing key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dagcore.protocol import signing
from dagma_project.config import ConfigError, describe_options, generate_config_text


def write_new_config(*, server_name: str, out: Path, database: dict[str, Any] | None = None) -> Path:
    """Write ``out`` and, beside it, ``<server_name>.signing.key`` (kept if it exists)."""
    key_path = out.parent / f"{server_name.replace(':', '_')}.signing.key"
    text = generate_config_text(
        server_name=server_name, signing_key_path=str(key_path.resolve()), database=database
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    if not key_path.exists():
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(signing.write_signing_keys([signing.generate_signing_key()]))
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds form_secret
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return key_path


class Command(BaseCommand):
    help = "Write a new dagma.yaml with a fresh Ed25519 signing key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--server-name", help="the server name (domain of user IDs)")
        parser.add_argument("--out", default="dagma.yaml", help="config file to write (default ./dagma.yaml)")
        parser.add_argument("--force", action="store_true", help="overwrite an existing config file")
        parser.add_argument("--list", action="store_true", help="print every option with default and example")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            self.stdout.write(describe_options())
            return
        if not options["server_name"]:
            raise CommandError("--server-name is required (e.g. --server-name example.com)")
        out = Path(options["out"]).resolve()
        if out.exists() and not options["force"]:
            raise CommandError(f"{out} already exists (use --force to overwrite)")
        try:
            key_path = write_new_config(server_name=options["server_name"], out=out)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"wrote {out}\nsigning key: {key_path}\n")

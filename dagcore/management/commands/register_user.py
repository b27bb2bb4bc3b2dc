"""``manage.py register_user LOCALPART [--admin] [--password-file FILE]``: create a local account.

The operator's counterpart of Synapse's ``register_new_matrix_user``: it works
whether or not registration is open to the public, writes straight to the
database, and prints the new user ID. Without ``--password-file`` the password
is asked for (twice) on the terminal; ``--password-file -`` reads it from stdin.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dagcore.actions import accounts as account_actions
from dagcore.http.errors import MatrixError


def _read_password_file(name: str) -> str:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read the password file: {exc}") from None
    # The first line is the password; a trailing newline is not part of it.
    password = text.splitlines()[0] if text else ""
    if not password:
        raise CommandError("the password file is empty")
    return password


def _prompt_password() -> str:
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for the password: use --password-file FILE (or - for stdin)")
    password = getpass.getpass("Password: ")
    if not password:
        raise CommandError("the password must not be empty")
    if getpass.getpass("Confirm password: ") != password:
        raise CommandError("the passwords do not match")
    return password


class Command(BaseCommand):
    help = "Create a local user account (works with registration closed) and print its user ID."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("localpart", help="the user name: a-z, 0-9 and . _ = - / + (e.g. alice)")
        parser.add_argument("--admin", action="store_true", help="make the user a server administrator")
        parser.add_argument(
            "--password-file", help="read the password from the first line of FILE ('-' for stdin)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        localpart = options["localpart"]
        if localpart.startswith("@"):
            raise CommandError("give the localpart only (alice), not a full user ID")
        try:
            account_actions.check_new_localpart(localpart)
            password = (
                _read_password_file(options["password_file"])
                if options["password_file"]
                else _prompt_password()
            )
            account_actions.check_new_password(password)
            user = account_actions.do_register_user(
                localpart=localpart, password=password, is_admin=options["admin"]
            )
        except MatrixError as exc:
            raise CommandError(f"{exc.error} ({exc.errcode})") from None
        self.stdout.write(user.user_id)

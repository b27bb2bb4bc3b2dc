"""``python manage.py dag <subcommand>`` — operator tools over the protocol core.

The interface is fixed (other tooling depends on it): ``resolve FILE``,
``auth-check FILE``, ``redact FILE``, ``inspect EVENT_ID``; the DAG doctor adds
``check``, ``repair`` and ``forks`` (issues 13 and 14). Bad input exits
with code 2 and one line on stderr, never a traceback. Each subcommand lives in
``dagcore/cli/<name>.py`` and exposes ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand

SUBCOMMANDS = {
    "resolve": ("dagcore.cli.resolve", "resolve the state sets in FILE; print the resolved state"),
    "auth-check": ("dagcore.cli.auth_check", "check the event in FILE against the auth rules"),
    "redact": ("dagcore.cli.redact", "print the redacted form of the event in FILE"),
    "inspect": ("dagcore.cli.inspect", "show a stored event, its DAG neighbours and state"),
    "check": ("dagcore.cli.check", "diagnose rooms' stored DAG and state (read-only; exit 0/1/2)"),
    "repair": ("dagcore.cli.repair", "plan (and with --apply, make) the repair of a room's DAG and state"),
    "forks": ("dagcore.cli.forks", "a room's forward extremities and how their states resolve"),
}


def _logs_to_stderr() -> None:
    """stdout is the command's answer (JSON that tools parse): log lines (the audit trail's
    ``dagma.audit`` line of a repair, say) go to stderr instead."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in lg.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)


class Command(BaseCommand):
    help = "Operator tools over the protocol core and the DAG doctor: resolve, auth-check, redact, inspect, check, repair, forks."

    def run_from_argv(self, argv: list[str]) -> None:
        # Our own parser: the exit-code contract (2 + one line) must hold for bad usage too.
        parser = argparse.ArgumentParser(prog="manage.py dag", description=self.help)
        sub = parser.add_subparsers(dest="subcommand", required=True)
        for name, (module_name, help_text) in SUBCOMMANDS.items():
            p = sub.add_parser(name, help=help_text)
            module = importlib.import_module(module_name)
            module.add_arguments(p)
        args = parser.parse_args(argv[2:])
        _logs_to_stderr()
        module = importlib.import_module(SUBCOMMANDS[args.subcommand][0])
        try:
            code = module.run(args)
        except KeyboardInterrupt:
            code = 130
        sys.stdout.flush()
        sys.exit(code)

    def handle(self, *args: Any, **options: Any) -> None:  # pragma: no cover - run_from_argv owns dispatch
        raise SystemExit(2)

"""``python3 manage.py vacuum [TABLE ...]``: reclaim dead rows (``doctor``'s fix for bloat).

PostgreSQL: ``VACUUM ANALYZE`` of the tables named (else of the whole database); SQLite:
``VACUUM`` (rewrites the file; needs as much free space as the database takes). Recorded in
the audit trail.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from dagcore.actions.audit import Actor, record_audit
from dagcore.store import health as store


class Command(BaseCommand):
    help = "VACUUM ANALYZE (PostgreSQL) or VACUUM (SQLite) the database, or the tables named."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tables", nargs="*", help="tables to vacuum (PostgreSQL; default: all)")

    def handle(self, *args: Any, **options: Any) -> None:
        tables = list(options["tables"])
        try:
            done = store.vacuum(tables=tables or None)
        except ValueError as exc:
            sys.stderr.write(f"vacuum: {exc}\n")
            sys.exit(2)
        record_audit(
            actor=Actor.cli(), action="vacuum", target=",".join(done)[:500], params={"tables": tables}
        )
        sys.stdout.write(f"vacuumed {', '.join(done)}\n")

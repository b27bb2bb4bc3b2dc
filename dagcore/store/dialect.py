"""What differs between the two databases Dagma runs on, decided in one place.

PostgreSQL is what production runs (several processes writing at once); SQLite is the
single-process quick start. Store modules ask here instead of reading
``connection.vendor`` themselves, so "which database is this" has one answer and the
PostgreSQL-only statements (advisory locks, arrays, pipelines, ``LATERAL``) are easy to find.
"""

from __future__ import annotations

import hashlib
import struct

from django.db import connection


def is_postgres() -> bool:
    """Whether the default connection is PostgreSQL (else SQLite)."""
    return connection.vendor == "postgresql"


def advisory_xact_lock(name: str) -> None:
    """Hold a lock named ``name`` until the current transaction ends, across processes.

    PostgreSQL: ``pg_advisory_xact_lock`` on a 64-bit key derived from the name. SQLite:
    nothing to do — its IMMEDIATE transactions already serialise every writer. Must be
    called inside ``transaction.atomic()``.
    """
    if not is_postgres():
        return
    key = struct.unpack(">q", hashlib.sha256(name.encode()).digest()[:8])[0]
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [key])

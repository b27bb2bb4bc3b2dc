"""The database schema's state: which migrations are still to apply (start-up checks)."""

from __future__ import annotations

from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from dagcore.store.dialect import is_postgres


def is_embedded_database() -> bool:
    """SQLite (the quick start), where ``serve`` migrates by itself."""
    return not is_postgres()


def has_unapplied_migrations() -> bool:
    executor = MigrationExecutor(connection)
    return bool(executor.migration_plan(executor.loader.graph.leaf_nodes()))

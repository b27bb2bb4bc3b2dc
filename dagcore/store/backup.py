"""The database side of backups: a consistent dump with the counts of the same snapshot, and a
scratch restore to verify one (``manage.py backup create|verify``).

PostgreSQL: ``pg_dump --format=custom`` runs on a snapshot exported by our own repeatable-read
transaction (``pg_export_snapshot``), and the manifest's row counts, migrations and stream
positions are read in that transaction — so the manifest describes exactly what the dump
holds, even while the server keeps writing. A verify restores it with ``pg_restore`` into a new
database that is dropped afterwards.

SQLite: the online backup API (``sqlite3.Connection.backup``) copies a consistent database while
the server runs; counts are read from the copy. A verify works on a copy of the copy.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from django.db import connection
from django.db.migrations.loader import MigrationLoader

#: What the manifest reads of a database (live snapshot, or a restored copy).
_MEDIA_TABLES = ("local_media", "media_thumbnails", "remote_media_cache", "remote_media_thumbnails")


class BackupDatabaseError(Exception):
    """pg_dump / pg_restore / SQLite failed; the message says which and why."""


class DatabaseUnreachable(BackupDatabaseError):
    """The database does not answer at all (nothing can be recorded in it either)."""


@dataclass
class DatabaseFacts:
    """What a database holds, as recorded in (and checked against) the manifest."""

    row_counts: dict[str, int] = field(default_factory=dict)
    migrations: list[str] = field(default_factory=list)  # "app.name", applied, sorted
    stream_positions: dict[str, int] = field(default_factory=dict)
    max_stream_ordering: int = 0
    media_digests: list[str] = field(default_factory=list)


def database_engine() -> str:
    """``postgresql`` or ``sqlite``."""
    return "postgresql" if connection.vendor == "postgresql" else "sqlite"


def code_migrations() -> list[str]:
    """Every migration this code base ships (``app.name``), for comparing with a backup's."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return sorted(f"{app}.{name}" for app, name in loader.disk_migrations)


def _pg_params() -> dict[str, str]:
    s = connection.settings_dict
    return {
        "dbname": str(s["NAME"]),
        "user": str(s.get("USER") or ""),
        "password": str(s.get("PASSWORD") or ""),
        "host": str(s.get("HOST") or ""),
        "port": str(s.get("PORT") or ""),
    }


def _pg_conninfo(params: dict[str, str], *, dbname: str | None = None) -> str:
    parts = {**params, **({"dbname": dbname} if dbname else {})}
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in parts.items() if v})


def _pg_env(params: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("password", "PGPASSWORD")):
        if params[key]:
            env[var] = params[key]
    return env


# --------------------------------------------------------------------------- reading facts


def _facts(cur: Any, *, tables: list[str]) -> DatabaseFacts:
    """Row counts and the rest, through a DB-API cursor (psycopg or sqlite3)."""
    facts = DatabaseFacts()
    for table in sorted(tables):
        cur.execute(f'SELECT COUNT(*) FROM "{table}"')  # names come from the catalogue, not input
        facts.row_counts[table] = int(cur.fetchone()[0])
    if "django_migrations" in tables:
        cur.execute("SELECT app, name FROM django_migrations")
        facts.migrations = sorted(f"{app}.{name}" for app, name in cur.fetchall())
    if "stream_counters" in tables:
        cur.execute("SELECT name, position FROM stream_counters")
        facts.stream_positions = {str(n): int(p) for n, p in cur.fetchall()}
    if "events" in tables:
        cur.execute("SELECT MAX(stream_ordering) FROM events")
        facts.max_stream_ordering = int(cur.fetchone()[0] or 0)
    digests: set[str] = set()
    for table in _MEDIA_TABLES:
        if table in tables:
            cur.execute(f'SELECT DISTINCT sha256 FROM "{table}" WHERE sha256 IS NOT NULL')
            digests.update(str(row[0]) for row in cur.fetchall())
    facts.media_digests = sorted(digests)
    return facts


def _pg_tables(cur: Any) -> list[str]:
    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return [str(r[0]) for r in cur.fetchall()]


def _sqlite_tables(cur: Any) -> list[str]:
    cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    return [str(r[0]) for r in cur.fetchall()]


# --------------------------------------------------------------------------- dumping


def dump_database(*, dest_dir: Path) -> tuple[str, DatabaseFacts]:
    """Write the database into ``dest_dir``; returns the file's name and the facts of exactly
    the dumped snapshot."""
    try:
        if database_engine() == "postgresql":
            return _pg_dump(dest_dir)
        return _sqlite_dump(dest_dir)
    except (psycopg.Error, sqlite3.Error) as exc:
        raise BackupDatabaseError(f"cannot read the database: {exc}") from None


def _pg_dump(dest_dir: Path) -> tuple[str, DatabaseFacts]:
    params = _pg_params()
    name = "database.pgdump"
    try:
        conn = psycopg.connect(_pg_conninfo(params))
    except psycopg.OperationalError as exc:
        raise DatabaseUnreachable(f"cannot read the database: {exc}") from None
    with conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot = str(row[0])
        # pg_dump reads the snapshot while our transaction keeps it alive.
        result = subprocess.run(  # noqa: S603 - arguments we build, not input
            [  # noqa: S607 - PostgreSQL's client from PATH, as operators run it
                "pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
                "--file", str(dest_dir / name), params["dbname"],
            ],
            env=_pg_env(params), capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise BackupDatabaseError(f"pg_dump failed: {result.stderr.strip()[-500:]}")
        with conn.cursor() as cur:
            facts = _facts(cur, tables=_pg_tables(cur))
        conn.rollback()
    return name, facts


def _sqlite_dump(dest_dir: Path) -> tuple[str, DatabaseFacts]:
    name = "database.sqlite3"
    src_path = str(connection.settings_dict["NAME"])
    dest_path = dest_dir / name
    src = sqlite3.connect(src_path, timeout=30)
    dest = sqlite3.connect(dest_path)
    try:
        src.backup(dest)  # the online backup API: consistent while other processes write
        # A self-contained file (WAL folded in), so the copy is one file.
        dest.execute("PRAGMA journal_mode=DELETE")
        facts = _facts(dest.cursor(), tables=_sqlite_tables(dest.cursor()))
    finally:
        dest.close()
        src.close()
    return name, facts


# --------------------------------------------------------------------------- scratch restore


@dataclass
class ScratchDatabase:
    """A restored copy of a backup's database, dropped when the ``restore_scratch`` block ends."""

    engine: str
    #: For ``DAGMA_DATABASE_URL`` (so ``manage.py`` commands can run against the copy).
    url: str
    _pg_conninfo: str = ""
    _sqlite_path: Path | None = None

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Any]:
        if self.engine == "postgresql":
            with psycopg.connect(self._pg_conninfo, autocommit=True) as conn, conn.cursor() as cur:
                yield cur
        else:
            lite = sqlite3.connect(str(self._sqlite_path))
            try:
                yield lite.cursor()
            finally:
                lite.close()

    def facts(self) -> DatabaseFacts:
        with self.cursor() as cur:
            tables = _pg_tables(cur) if self.engine == "postgresql" else _sqlite_tables(cur)
            return _facts(cur, tables=tables)

    def own_signing_keys(self) -> list[OwnKeyRow]:
        """This server's keys kept in the copy's database (where a version keeps them there)."""
        with self.cursor() as cur:
            tables = _pg_tables(cur) if self.engine == "postgresql" else _sqlite_tables(cur)
            return _own_signing_keys(cur, tables)


@dataclass(frozen=True)
class OwnKeyRow:
    key_id: str
    verify_key: str
    has_private_half: bool
    expired_ts: int | None


def _own_signing_keys(cur: Any, tables: list[str]) -> list[OwnKeyRow]:
    if "server_signing_keys" not in tables:
        return []  # keys live only in the key file
    cur.execute("SELECT key_id, verify_key, seed IS NOT NULL, expired_ts FROM server_signing_keys")
    return [
        OwnKeyRow(str(k), str(v), bool(p), None if e is None else int(e)) for k, v, p, e in cur.fetchall()
    ]


@contextlib.contextmanager
def restore_scratch(*, dump: Path, engine: str) -> Iterator[ScratchDatabase]:
    """Restore ``dump`` into a scratch database (PostgreSQL: a new database on our server;
    SQLite: a temporary copy); dropped or deleted when the block ends."""
    if engine == "postgresql":
        params = _pg_params()
        scratch = f"{params['dbname'][:40]}_verify_{secrets.token_hex(4)}"
        admin = _pg_conninfo(params, dbname="postgres")
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{scratch}"')
        except psycopg.Error as exc:
            raise BackupDatabaseError(
                f"cannot create the scratch database {scratch} (the database user needs CREATEDB): {exc}"
            ) from None
        try:
            result = subprocess.run(  # noqa: S603 - arguments we build, not input
                [  # noqa: S607 - PostgreSQL's client from PATH
                    "pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--dbname", scratch,
                    str(dump),
                ],
                env=_pg_env(params), capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise BackupDatabaseError(f"pg_restore failed: {result.stderr.strip()[-500:]}")
            auth = quote(params["user"], safe="") + (
                f":{quote(params['password'], safe='')}" if params["password"] else ""
            )
            host = params["host"] or "localhost"
            port = f":{params['port']}" if params["port"] else ""
            yield ScratchDatabase(
                engine=engine,
                url=f"postgres://{auth}@{host}{port}/{scratch}",
                _pg_conninfo=_pg_conninfo(params, dbname=scratch),
            )
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        return
    with tempfile.TemporaryDirectory(prefix="dagma-verify-") as tmp:
        copy = Path(tmp) / "homeserver.db"
        shutil.copyfile(dump, copy)
        try:
            lite = sqlite3.connect(str(copy))
            try:
                row = lite.execute("PRAGMA integrity_check").fetchone()
            finally:
                lite.close()
        except sqlite3.DatabaseError as exc:
            raise BackupDatabaseError(f"the SQLite copy does not open: {exc}") from None
        if not row or row[0] != "ok":
            raise BackupDatabaseError(f"SQLite integrity_check: {row[0] if row else 'no answer'}")
        yield ScratchDatabase(engine=engine, url=f"sqlite:///{copy}", _sqlite_path=copy)

"""Settings for the test suite: PostgreSQL + Redis by default (DAGMA_TEST_DB=sqlite for SQLite)."""

import os
from pathlib import Path

_root = Path(__file__).resolve().parent.parent.parent
os.environ.setdefault("DAGMA_CONFIG", str(_root / ".tmp" / "test-dagma.yaml"))  # need not exist
os.environ.setdefault("DAGMA_SERVER_NAME", "test.dagma.local")
if os.environ.get("DAGMA_TEST_DB", "postgres") == "sqlite":
    # The embedded default: SQLite, no Redis (in-memory channel layer, local rate limits).
    os.environ.setdefault("DAGMA_DATABASE_URL", f"sqlite:///{_root / '.tmp' / 'test.sqlite3'}")
else:
    os.environ.setdefault("DAGMA_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dagma")
    os.environ.setdefault("DAGMA_REDIS_URL", "redis://127.0.0.1:6379/0")

from dagma_project.settings.base import *  # noqa: E402, F403

ROOT_URLCONF = "dagma_project.urls_all"
DAGMA_SERVER_ROLE = "all"
DAGMA_NO_HEARTBEAT = True  # a test process is not a server: no heartbeat thread

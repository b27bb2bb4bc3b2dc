"""Suite-wide fixtures: a signing key for the test server, account and room builders."""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A failed test that ran real servers reports what they were doing: each process's
    threads (``serve`` dumps them on SIGUSR1) and the end of its log. A request that timed
    out in CI is then explained by the report, not guessed at."""
    outcome = yield
    report = outcome.get_result()
    live = sys.modules.get("tests.support.live")
    if report.when != "call" or not report.failed or live is None:
        return
    for server in live.running_servers():
        name = f"{server.role} {server.server_name}"
        log = server.log_tail(6000)
        report.sections.append((f"threads of {name}", server.dump_threads()[-20000:]))
        report.sections.append((f"log of {name}", log))


@pytest.fixture(scope="session", autouse=True)
def _server_signing_key() -> None:
    from dagcore.protocol import signing

    path = Path(settings.DAGMA.signing_key_path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(signing.write_signing_keys([signing.generate_signing_key()]))


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Generator[None, None, None]:
    """pytest-django's test databases, and before they are dropped: the sessions this process's
    worker threads left open end. The server's long-lived pools (``dagma-membership``,
    ``remote-media``...) keep a connection per thread for the life of the process; in the test
    process that outlived the tests, and dropping the database failed ("being accessed by
    other users"), leaving it behind."""
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        for alias in connections:
            connection = connections[alias]
            if connection.vendor != "postgresql":
                continue
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(scope="session", autouse=True)
def _celery_app() -> None:
    """As in a server process (``dagma_project.startup``): with a broker configured, queued
    tasks go to it through the project's Celery app, which registers itself when loaded."""
    if settings.CELERY_BROKER_URL:
        import dagma_project.celery  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> None:
    """In-process caches are keyed by database IDs, which a rolled-back test may hand out
    again (SQLite): every test starts without them."""
    from dagcore.caching import clear_process_caches

    clear_process_caches()


@pytest.fixture(scope="session")
def dagma_server(tmp_path_factory: pytest.TempPathFactory):
    """One real ``serve all`` process (PostgreSQL + Redis) shared by the API tests."""
    from tests.support.live import LiveServer

    server = LiveServer(tmp_path_factory.mktemp("live"))
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def make_client(dagma_server):
    """``make_client()`` -> a freshly registered user's MatrixClient on the live server."""
    from tests.support.client import MatrixClient

    made: list[MatrixClient] = []

    def factory(localpart: str | None = None, *, register: bool = True) -> MatrixClient:
        client = MatrixClient(dagma_server.base_url)
        if register:
            client.register(localpart)
        made.append(client)
        return client

    yield factory
    for c in made:
        c.close()

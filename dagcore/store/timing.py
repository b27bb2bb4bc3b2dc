"""Time spent in the database: every statement, per process and per request.

One execute wrapper on every connection (installed by :func:`install_query_timing` when a
connection is made) observes each statement's duration into
:data:`DB_QUERY_SECONDS` and, when the caller started a :class:`QueryClock` (the request
observer does, for its access line), adds it there too. A ``perf_counter`` pair and a
histogram observation per statement: no query of its own, no per-statement allocation.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from time import perf_counter
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from prometheus_client import Histogram

#: Statement durations (seconds): most take well under a millisecond, a slow one seconds.
DB_QUERY_SECONDS = Histogram(
    "dagma_db_query_duration_seconds",
    "Duration of database statements, as the process saw them.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)


class QueryClock:
    """The statements of one unit of work (a request): how many, and their total time."""

    __slots__ = ("count", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0


_clock: ContextVar[QueryClock | None] = ContextVar("dagma_query_clock", default=None)


def start_query_clock() -> QueryClock:
    """Count the statements run from this context on (threads it hands work to included:
    ``sync_to_async`` and ``copy_context`` carry the clock along)."""
    clock = QueryClock()
    _clock.set(clock)
    return clock


def _timed(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    start = perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        elapsed = perf_counter() - start
        DB_QUERY_SECONDS.observe(elapsed)
        clock = _clock.get()
        if clock is not None:
            clock.count += 1
            clock.seconds += elapsed


def _on_connection(sender: Any, connection: BaseDatabaseWrapper, **_: Any) -> None:
    # A thread's connection object outlives its database connections (pooled, reconnected):
    # the wrapper is added once.
    if _timed not in connection.execute_wrappers:
        connection.execute_wrappers.append(_timed)


def install_query_timing() -> None:
    """Time every statement of connections made from now on (idempotent)."""
    connection_created.connect(_on_connection, dispatch_uid="dagma-query-timing")

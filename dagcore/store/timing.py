"""Time spent in the database: every statement, per process and per request.

One execute wrapper on every connection (installed by :func:`install_query_timing` when a
connection is made) counts each statement's duration into the
``dagma_db_query_duration_seconds`` histogram and, when the caller started a
:class:`QueryClock` (the request observer does, for its access line), adds it there too.

A request runs tens of statements, so this is the hottest metric of all: instead of
prometheus-client's histogram (a lock per bucket and per sum, ~2 µs), each thread counts
into its own plain list (no lock: only that thread writes it) and the collector adds the
threads' lists up when scraped (~0.5 µs per statement). No query of its own.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from time import perf_counter
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from prometheus_client import REGISTRY
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

#: Upper bounds of the statement histogram (seconds): most take well under a millisecond.
BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _ThreadCounts:
    """One thread's statements: per bucket (the last one: above every bound), and their time."""

    __slots__ = ("buckets", "seconds")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BOUNDS) + 1)
        self.seconds = 0.0


_local = threading.local()
#: Every thread's counts, kept after the thread ends (they are counters: they never go back).
_all_counts: list[_ThreadCounts] = []


def _thread_counts() -> _ThreadCounts:
    counts: _ThreadCounts | None = getattr(_local, "counts", None)
    if counts is None:
        counts = _local.counts = _ThreadCounts()
        _all_counts.append(counts)
    return counts


class QueryHistogram(Collector):
    """``dagma_db_query_duration_seconds``: the threads' counts added up at scrape time."""

    def collect(self) -> Iterable[Metric]:
        totals = [0] * (len(BOUNDS) + 1)
        seconds = 0.0
        for counts in list(_all_counts):
            seconds += counts.seconds
            for i, n in enumerate(counts.buckets):
                totals[i] += n
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*[str(b) for b in BOUNDS], "+Inf"), totals, strict=True):
            running += n
            cumulative.append((bound, running))
        yield HistogramMetricFamily(
            "dagma_db_query_duration_seconds",
            "Duration of database statements, as the process saw them.",
            buckets=cumulative,
            sum_value=seconds,
        )


REGISTRY.register(QueryHistogram())


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
        counts = _thread_counts()
        counts.buckets[bisect_left(BOUNDS, elapsed)] += 1
        counts.seconds += elapsed
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

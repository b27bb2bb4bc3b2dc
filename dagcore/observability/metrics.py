"""The ``dagma_*`` series updated by the code paths themselves (counters and histograms).

Each update is a lock and an addition in this process (prometheus-client): no I/O, no
query. Labels are bounded sets only (route patterns, outcome names, task names): never a
user, room, server name, token or raw path.

The figures about shared state (queues, disk, extremities, beat jobs) are in
:mod:`dagcore.observability.gauges`.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

#: Request, transaction and task durations: from a millisecond to a long-poll's half minute.
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

EVENTS_PERSISTED = Counter(
    "dagma_events_persisted",
    "Events that became part of a room (after their transaction committed), by origin: "
    "local (our users sent them) or remote (received over federation).",
    ["origin"],
)

HTTP_REQUESTS = Counter(
    "dagma_http_requests",
    "HTTP requests answered, by route pattern, method and status (499: the client went away first).",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "dagma_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer (a /sync long-poll's wait included).",
    ["route", "method"],
    buckets=_SECONDS,
)
HTTP_DB_SECONDS = Histogram(
    "dagma_http_request_db_seconds",
    "Database time of one HTTP request (its statements' durations added up).",
    ["route", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
)

FEDERATION_SEND_SECONDS = Histogram(
    "dagma_federation_send_duration_seconds",
    "Outbound transactions: PUT /send/{txnId} to another server until its answer, by outcome "
    "(ok, refused: a 4xx, failed: unreachable, 5xx or timeout).",
    ["outcome"],
    buckets=_SECONDS,
)
FEDERATION_RECEIVE_SECONDS = Histogram(
    "dagma_federation_receive_duration_seconds",
    "Inbound transactions: processing one received PUT /send/{txnId} (checks, staging, and the "
    "PDUs persisted within the answer's time budget).",
    buckets=_SECONDS,
)
FEDERATION_PDUS_RECEIVED = Counter(
    "dagma_federation_received_pdus",
    "PDUs received in inbound transactions.",
)

STATE_RESOLUTION_SECONDS = Histogram(
    "dagma_state_resolution_duration_seconds",
    "State resolution runs (rooms whose forward extremities disagree on the state).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0),
)

TASK_RUNS = Counter(
    "dagma_task_runs",
    "Background tasks run by this process (Celery worker, or the in-process runner), by task "
    "name and outcome (ok, failed, retry).",
    ["task", "outcome"],
)
TASK_SECONDS = Histogram(
    "dagma_task_duration_seconds",
    "Background task durations, by task name.",
    ["task"],
    buckets=_SECONDS,
)

#: Methods counted by name; anything else is "other" (a method name is client input).
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else "other"


def note_events_persisted(*, local: bool, count: int) -> None:
    EVENTS_PERSISTED.labels("local" if local else "remote").inc(count)

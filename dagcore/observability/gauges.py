"""The costly gauges: figures about shared state, computed at most every :data:`CACHE_SECONDS`.

Queue depths, extremities, database and media sizes, disk space, certificate and key
ages, beat jobs: a handful of aggregate statements and ``statvfs`` calls, run by the
scrape that finds the cache stale (on the metrics listener's thread, never in a request)
and served from the cache by the scrapes in between. No scrape, no query.

Which process exposes them: every process with metrics on (each caches for itself), so
any one scrape target is enough and losing one loses nothing. Being the same figure seen
from several processes, they are aggregated with ``max`` (never ``sum``) across targets;
the alert rules and the dashboard do so.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from dagcore.caching import registered_caches
from dagcore.clock import now_ms
from dagcore.store import metrics as metrics_store
from dagcore.store import operations as operations_store
from dagcore.store.transaction import release_connection

logger = logging.getLogger("dagma.metrics")

CACHE_SECONDS = 30.0
#: With ``enable_test_hooks`` (test servers only) the suite sees changes within a second.
TEST_CACHE_SECONDS = 1.0
#: Upper bounds of the forward-extremities histogram (rooms by their number of extremities).
EXTREMITY_BUCKETS = (1, 2, 3, 5, 10, 20, 50, 100)


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    if labels is None:
        return GaugeMetricFamily(name, doc, value=value)
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def federation_figures() -> Iterator[Metric]:
    queues = metrics_store.get_federation_queues()
    lag = GaugeMetricFamily(
        "dagma_event_processing_lag",
        "Events waiting to be processed: inbound = received PDUs staged and not yet persisted, "
        "outbound = the largest backlog of one destination (PDUs and EDUs).",
        labels=["direction"],
    )
    lag.add_metric(["inbound"], queues.staged_inbound_pdus)
    lag.add_metric(["outbound"], queues.largest_destination_backlog)
    yield lag
    yield _gauge(
        "dagma_federation_outbound_queue_size",
        "Outbox rows (PDUs and durable EDUs) waiting for delivery, all destinations together.",
        queues.outbound_queue,
    )
    yield _gauge(
        "dagma_federation_failing_destinations",
        "Destinations whose last delivery attempts failed (backing off).",
        queues.failing_destinations,
    )


def extremity_figures() -> Iterator[Metric]:
    rooms_by_count = metrics_store.get_forward_extremity_counts()
    yield _gauge(
        "dagma_forward_extremities_max",
        "The most forward extremities of one room (many mean costly state resolution).",
        max(rooms_by_count, default=0),
    )
    buckets: list[tuple[str, float]] = []
    for bound in EXTREMITY_BUCKETS:
        buckets.append((str(bound), sum(n for count, n in rooms_by_count.items() if count <= bound)))
    buckets.append(("+Inf", sum(rooms_by_count.values())))
    yield HistogramMetricFamily(
        "dagma_forward_extremities",
        "Rooms by their number of forward extremities.",
        buckets=buckets,
        sum_value=sum(count * n for count, n in rooms_by_count.items()),
    )


def storage_figures() -> Iterator[Metric]:
    yield _gauge(
        "dagma_database_size_bytes",
        "Size of the database (PostgreSQL's pg_database_size, or the SQLite file and its WAL).",
        metrics_store.get_database_bytes(),
    )
    media = GaugeMetricFamily(
        "dagma_media_bytes",
        "Bytes of media by kind: local uploads, cached remote media, thumbnails.",
        labels=["kind"],
    )
    for kind, size in metrics_store.get_media_bytes().items():
        media.add_metric([kind], size)
    yield media
    free = GaugeMetricFamily(
        "dagma_disk_free_bytes",
        "Free bytes (for this process's user) on the file system of each path.",
        labels=["path"],
    )
    total = GaugeMetricFamily(
        "dagma_disk_total_bytes", "Size of the file system of each path.", labels=["path"]
    )
    for name, path in disk_paths().items():
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            continue  # not created yet (media before the first upload), or not ours to see
        free.add_metric([name], usage.free)
        total.add_metric([name], usage.total)
    yield free
    yield total


def disk_paths() -> dict[str, Path]:
    """The watched paths: the database's folder (when it is on this host and may be known),
    the media store, the logs (journald's store, else /var/log)."""
    paths: dict[str, Path] = {}
    database = metrics_store.get_database_directory()
    if database is not None:
        paths["database"] = database
    paths["media"] = Path(settings.MEDIA_STORE_PATH)
    journal = Path("/var/log/journal")
    paths["logs"] = journal if journal.is_dir() else Path("/var/log")
    return paths


def identity_figures() -> Iterator[Metric]:
    config = settings.DAGMA
    now_s = time.time()
    try:
        key_written = Path(config.signing_key_path).stat().st_mtime
    except OSError:
        key_written = None
    if key_written is not None:
        yield _gauge(
            "dagma_signing_key_age_seconds",
            "Age of the signing key file (since it was last written: generated or rotated).",
            now_s - key_written,
        )
    if config.tls_certificate_path:
        expiry = certificate_not_after(config.resolve_path(config.tls_certificate_path))
        if expiry is not None:
            yield _gauge(
                "dagma_tls_certificate_expiry_seconds",
                "Seconds until the federation listener's TLS certificate expires (negative: expired).",
                expiry - now_s,
            )


def certificate_not_after(path: Path) -> float | None:
    """The first certificate's notAfter (epoch seconds), None when the file cannot be read."""
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        logger.warning("metrics: cannot read the TLS certificate %s", path)
        return None
    return certificate.not_valid_after_utc.timestamp()


def beat_figures(intervals: dict[str, float]) -> Callable[[], Iterator[Metric]]:
    def figures() -> Iterator[Metric]:
        interval = GaugeMetricFamily(
            "dagma_beat_job_interval_seconds", "How often each beat job is scheduled.", labels=["beat_job"]
        )
        for job, every in sorted(intervals.items()):
            interval.add_metric([job], every)
        yield interval
        success = GaugeMetricFamily(
            "dagma_beat_last_success_timestamp_seconds",
            "When each beat job last finished without error (jobs that never did are absent).",
            labels=["beat_job"],
        )
        for job, run in sorted(operations_store.list_job_runs().items()):
            if run.last_success_ts is not None:
                success.add_metric([job], run.last_success_ts / 1000)
        yield success

    return figures


class SharedStateCollector(Collector):
    """The gauges above, recomputed by the first scrape after :data:`CACHE_SECONDS`."""

    def __init__(self, *, beat_intervals: dict[str, float], cache_seconds: float = CACHE_SECONDS) -> None:
        self.cache_seconds = cache_seconds
        self.groups: list[tuple[str, Callable[[], Iterable[Metric]]]] = [
            ("federation", federation_figures),
            ("extremities", extremity_figures),
            ("storage", storage_figures),
            ("identity", identity_figures),
            ("beat", beat_figures(beat_intervals)),
        ]
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._computed_at: float | None = None

    def describe(self) -> list[Any]:
        return []  # computed lazily: registering must not query

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if self._computed_at is None or time.monotonic() - self._computed_at >= self.cache_seconds:
                self._families = self._compute()
                self._computed_at = time.monotonic()
            return list(self._families)

    def _compute(self) -> list[Metric]:
        started = time.monotonic()
        families: list[Metric] = []
        failed = GaugeMetricFamily(
            "dagma_metrics_collection_failed",
            "1 for each group of shared-state gauges whose last computation failed (see the log).",
            labels=["group"],
        )
        try:
            for name, figures in self.groups:
                try:
                    families.extend(figures())
                    failed.add_metric([name], 0)
                except Exception:
                    logger.exception("metrics: computing the %s gauges failed", name)
                    failed.add_metric([name], 1)
        finally:
            # The scrape's thread is not a request: give its connection back.
            release_connection()
        families.append(failed)
        families.append(
            _gauge(
                "dagma_metrics_collection_seconds",
                "How long the last computation of the shared-state gauges took.",
                time.monotonic() - started,
            )
        )
        families.append(
            _gauge(
                "dagma_metrics_collection_timestamp_seconds",
                "When the shared-state gauges were last computed.",
                now_ms() / 1000,
            )
        )
        return families


class CacheCollector(Collector):
    """The in-process caches (``dagcore.caching``): look-ups, hits and fill, per cache name.
    Counted by the caches themselves (an addition under the lock they take anyway)."""

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Metric]:
        hits = CounterMetricFamily(
            "dagma_cache_hits", "Cache look-ups answered from the cache.", labels=["cache"]
        )
        misses = CounterMetricFamily(
            "dagma_cache_misses", "Cache look-ups not in the cache.", labels=["cache"]
        )
        size = GaugeMetricFamily("dagma_cache_size", "Entries in the cache.", labels=["cache"])
        limit = GaugeMetricFamily("dagma_cache_max_size", "Most entries the cache keeps.", labels=["cache"])
        for name, cache in sorted(registered_caches().items()):
            hits.add_metric([name], cache.hits)
            misses.add_metric([name], cache.misses)
            size.add_metric([name], len(cache))
            limit.add_metric([name], cache.maxsize)
        return [hits, misses, size, limit]

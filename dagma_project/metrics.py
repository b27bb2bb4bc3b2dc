"""This process's metrics listener (``enable_metrics``, ``metrics_port``, ``metrics_bind_address``).

One listener per process, started once at process start: every serving process
(``dagma_project.startup``), Celery workers and beat (``dagma_project.celery``). Each
exposes its own series with a ``role`` label (tribune, embassy, politburo, all, worker,
beat); several processes on one host take one port each (``serve --metrics-port N``,
``DAGMA_METRICS_PORT=N`` for Celery). The shared-state gauges
(:mod:`dagcore.observability.gauges`) are exposed by every process, cached: aggregate them
with ``max``.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from prometheus_client import REGISTRY, Gauge, disable_created_metrics, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from dagcore import __version__
from dagcore.events_persisted import EventsPersisted, subscribe
from dagcore.observability.gauges import (
    CACHE_SECONDS,
    TEST_CACHE_SECONDS,
    CacheCollector,
    SharedStateCollector,
)
from dagcore.observability.metrics import EVENTS_PERSISTED, FEDERATION_SEND_SECONDS, note_events_persisted
from dagcore.taskqueue.schedule import BEAT_SCHEDULE

logger = logging.getLogger("dagma.metrics")

BUILD_INFO = Gauge("dagma_build_info", "Always 1: the Dagma and Python versions of this process.",
                   ["version", "python"])  # fmt: skip

_started: str | None = None


class MetricsListenerError(Exception):
    """The metrics listener cannot start (its port is taken): the message names the option."""


class RoleLabelled(Collector):
    """Every series of a registry with this process's ``role`` label added."""

    def __init__(self, registry: Any, role: str) -> None:
        self.registry = registry
        self.role = role

    def restricted_registry(self, names: Iterable[str]) -> RoleLabelled:
        """``/metrics?name[]=...`` (prometheus-client asks the registry it serves for this)."""
        return RoleLabelled(self.registry.restricted_registry(names), self.role)

    def collect(self) -> Iterable[Metric]:
        for family in self.registry.collect():
            family.samples = [s._replace(labels={**s.labels, "role": self.role}) for s in family.samples]
            yield family


def _count_persisted(batch: EventsPersisted) -> None:
    note_events_persisted(local=batch.local, count=len(batch.events))


def start_metrics(role: str) -> bool:
    """Start the listener if ``enable_metrics`` (once per process); whether it runs."""
    global _started
    config = settings.DAGMA
    if not config.enable_metrics or _started is not None:
        return _started is not None
    BUILD_INFO.labels(__version__, platform.python_version()).set(1)
    subscribe("metrics", _count_persisted)
    # Series Dagma does not need (and Prometheus would store): the *_created timestamps.
    disable_created_metrics()
    # Present (at 0) before the first event or transaction: a rate() over them starts at once.
    for outcome in ("ok", "refused", "failed"):
        FEDERATION_SEND_SECONDS.labels(outcome)
    for origin in ("local", "remote"):
        EVENTS_PERSISTED.labels(origin)
    REGISTRY.register(CacheCollector())
    REGISTRY.register(
        SharedStateCollector(
            beat_intervals={name: every for name, (_, every) in BEAT_SCHEDULE.items()},
            cache_seconds=TEST_CACHE_SECONDS if config.enable_test_hooks else CACHE_SECONDS,
        )
    )
    try:
        start_http_server(
            config.metrics_port, addr=config.metrics_bind_address, registry=RoleLabelled(REGISTRY, role)
        )
    except OSError as exc:
        raise MetricsListenerError(
            f"metrics_port: cannot listen on {config.metrics_bind_address} port {config.metrics_port} "
            f"({exc.strerror or exc}); give each process on this host its own port "
            "(`serve --metrics-port N`, DAGMA_METRICS_PORT=N)"
        ) from None
    _started = role
    logger.info(
        "metrics: listening on %s port %d (role %s)", config.metrics_bind_address, config.metrics_port, role
    )
    return True

"""Federation figures: the sender's transaction times by outcome, and the queue gauges
(computed from the outbox, the back-off state and the inbound staging table)."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import REGISTRY
from prometheus_client.core import Metric

from dagcore.federation import sender
from dagcore.federation.client import FederationHttpError, FederationUnreachable
from dagcore.observability.gauges import SharedStateCollector
from dagcore.store import metrics as metrics_store
from tests.federation.test_outbox import Clock, FakePeer, _join, _msg, _raise, _room, clock, room_with_peer
from tests.support.events import RemoteServer

__all__ = ["clock", "room_with_peer"]  # fixtures, used by name

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db]


def sends(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("dagma_federation_send_duration_seconds_count", {"outcome": outcome}) or 0.0
    )


def test_each_outbound_transaction_is_timed_under_its_outcome(clock: Clock, room_with_peer: str) -> None:
    before = {o: sends(o) for o in ("ok", "refused", "failed")}
    peer = FakePeer()
    peer.script = [_raise(FederationUnreachable("one.test", "connection refused"))]
    _msg(room_with_peer, "a")
    sender.do_send_to_destination(destination="one.test", transport=peer)
    clock.ms += sender.MIN_RETRY_MS
    peer.script = [_raise(FederationHttpError("one.test", 400, {"errcode": "M_BAD_JSON"}))]
    sender.do_send_to_destination(destination="one.test", transport=peer)  # refused, then nothing left
    _msg(room_with_peer, "b")
    sender.do_send_to_destination(destination="one.test", transport=peer)
    assert {o: sends(o) - before[o] for o in before} == {"ok": 1, "refused": 1, "failed": 1}


def test_the_queue_gauges_count_the_outbox_the_failing_destinations_and_the_backlog(
    clock: Clock, room_with_peer: str
) -> None:
    _join(room_with_peer, RemoteServer("two.test"))
    for i in range(3):
        _msg(room_with_peer, str(i))  # 3 rows for one.test and 3 for two.test
    peer = FakePeer()
    peer.script = [_raise(FederationHttpError("one.test", 502, None))]
    sender.do_send_to_destination(destination="one.test", transport=peer)
    sender.do_send_to_destination(destination="two.test", transport=FakePeer())  # delivered
    queues = metrics_store.get_federation_queues()
    assert (queues.outbound_queue, queues.largest_destination_backlog, queues.failing_destinations) == (
        3,
        3,
        1,
    )
    assert queues.staged_inbound_pdus == 0


def _scrape_on_a_thread(collector: SharedStateCollector) -> tuple[dict[str, Metric], int]:
    """As the metrics listener does: its own thread (and connection); the statements it ran."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    out: list[tuple[dict[str, Metric], int]] = []

    def scrape() -> None:
        with CaptureQueriesContext(connection) as queries:
            families = {f.name: f for f in collector.collect()}
        out.append((families, len(queries)))

    thread = threading.Thread(target=scrape)
    thread.start()
    thread.join()
    return out[0]


@pytest.mark.django_db(transaction=True)
def test_the_collector_serves_rooms_by_extremities_and_caches_its_figures() -> None:
    _room()
    _room()
    collector = SharedStateCollector(beat_intervals={"push-all": 30.0}, cache_seconds=3600)
    families, statements = _scrape_on_a_thread(collector)
    assert statements > 0
    extremities = {s.labels.get("le"): s.value for s in families["dagma_forward_extremities"].samples}
    assert extremities["1"] == extremities["+Inf"] == 2  # fresh rooms: one extremity each
    assert families["dagma_forward_extremities_max"].samples[0].value == 1
    assert [s.value for s in families["dagma_metrics_collection_failed"].samples] == [0] * 5
    assert families["dagma_beat_job_interval_seconds"].samples[0].labels == {"beat_job": "push-all"}
    # Within the cache's life a scrape runs no statement.
    again, statements = _scrape_on_a_thread(collector)
    assert statements == 0
    assert again["dagma_forward_extremities"] is families["dagma_forward_extremities"]

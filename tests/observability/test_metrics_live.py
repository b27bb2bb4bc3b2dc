"""Metrics and access lines of a live Dagma, scraped by a real Prometheus.

The production layout in small: one ``serve all`` (PostgreSQL, Redis, federation over TLS,
``enable_metrics`` on the config's ``metrics_port``) and one Celery worker with the beat
embedded (its own port, ``DAGMA_METRICS_PORT``, as an operator sets it for a second process
on the host); one Prometheus scraping both every second with the shipped alert rules
loaded; a fake federating server signing transactions to Dagma.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.federation.certs import TestCA
from tests.security.hostile_server import HostileServer
from tests.support.client import MatrixClient, q
from tests.support.live import CeleryWorker, LiveServer, free_port, wait_for
from tests.support.prometheus import Prometheus

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "dagma-alerts.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "dagma.json"
METRIC_NAME = re.compile(r"\b(?:dagma|process)_[a-z_]+\b")


@dataclass
class Observed:
    dagma: LiveServer
    metrics_url: str
    worker_metrics_url: str
    prometheus: Prometheus
    ca: TestCA
    fed: HostileServer


class _WithMetricsPort:
    """The server as its worker sees it, plus ``DAGMA_METRICS_PORT`` in the environment."""

    def __init__(self, server: LiveServer, port: int) -> None:
        self.server = server
        self.workdir = server.workdir
        self.port = port

    def env(self) -> dict[str, str]:
        return {**self.server.env(), "DAGMA_METRICS_PORT": str(self.port)}


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    root = tmp_path_factory.mktemp("metrics")
    ca = TestCA(root / "ca")
    cert = ca.issue("localhost", "127.0.0.1", stem="dagma")
    metrics_port = free_port()
    worker_port = free_port()
    dagma = LiveServer(
        root / "dagma",
        federation_tls=(cert.cert_path, cert.key_path),
        config={
            "federation_custom_ca_list": [str(ca.cert_path)],
            "ip_range_whitelist": ["127.0.0.1/32"],
            "enable_metrics": True,
            "metrics_port": metrics_port,
        },
    )
    fed = HostileServer(ca, "peer")
    worker = CeleryWorker(
        _WithMetricsPort(dagma, worker_port),  # type: ignore[arg-type]
        "federation,maintenance,push,media",
        beat=True,
    )
    prometheus: Prometheus | None = None
    try:
        dagma.start()
        worker.start()
        prometheus = Prometheus(
            root / "prometheus",
            targets={
                "dagma-all": [f"127.0.0.1:{metrics_port}"],
                "dagma-worker": [f"127.0.0.1:{worker_port}"],
            },
            rule_files=[RULES],
        ).start()
        yield Observed(
            dagma,
            f"http://127.0.0.1:{metrics_port}/metrics",
            f"http://127.0.0.1:{worker_port}/metrics",
            prometheus,
            ca,
            fed,
        )
    finally:
        if prometheus is not None:
            prometheus.stop()
        worker.stop()
        fed.close()
        dagma.destroy()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of one scrape: (name, labels) -> value."""
    text = httpx.get(url, timeout=10.0).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples having these labels (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def access_lines(server: LiveServer) -> list[dict[str, Any]]:
    lines = []
    for line in server.log_path.read_text().splitlines():
        if line.startswith("{") and '"dagma.access"' in line:
            lines.append(json.loads(line))
    return lines


def test_prometheus_gets_every_series_the_alert_rules_and_the_dashboard_use(observed: Observed) -> None:
    """A name in a rule or panel that Dagma does not export would be an alert that never fires."""
    alice = MatrixClient(observed.dagma.base_url).register(f"a{secrets.token_hex(3)}")
    alice.send(alice.create_room(), "traffic for the request series")
    names = set(METRIC_NAME.findall(RULES.read_text())) | set(METRIC_NAME.findall(DASHBOARD.read_text()))
    assert {"dagma_http_requests_total", "dagma_events_persisted_total", "process_cpu_seconds_total"} <= names
    selector = "|".join(sorted(names))

    def present() -> set[str]:
        found = observed.prometheus.query(f'count by (__name__) ({{__name__=~"{selector}"}})')
        return {r["metric"]["__name__"] for r in found}

    # The beat's first jobs run 10 s after start (federation-send-pending): task and beat series.
    try:
        wait_for(lambda: present() == names, "every rule and dashboard series in Prometheus", timeout=60)
    except AssertionError:
        raise AssertionError(f"missing from Prometheus: {sorted(names - present())}") from None
    up = observed.prometheus.query('up{job=~"dagma-.*"}')
    assert sorted((r["metric"]["job"], r["value"][1]) for r in up) == [
        ("dagma-all", "1"),
        ("dagma-worker", "1"),
    ]
    # Every series carries the role of the process it comes from.
    roles = observed.prometheus.query('count by (job, role) ({__name__=~"dagma_.+"})')
    assert sorted((r["metric"]["job"], r["metric"].get("role")) for r in roles) == [
        ("dagma-all", "all"),
        ("dagma-worker", "worker"),
    ]


def test_the_worker_counts_its_tasks_and_records_its_beat_jobs(observed: Observed) -> None:
    # federation-send-pending is the beat's most frequent job (every 10 s).
    task = "embassy.tasks.send_pending"
    samples = wait_for(
        lambda: (
            (s := scrape(observed.worker_metrics_url))
            and sample(s, "dagma_beat_last_success_timestamp_seconds", beat_job="federation-send-pending") > 0
            and s
        ),
        "the beat job's run recorded in the worker's metrics",
        timeout=40,
    )
    assert sample(samples, "dagma_task_runs_total", task=task, outcome="ok", role="worker") >= 1
    assert sample(samples, "dagma_task_duration_seconds_count", task=task) >= 1
    assert sample(samples, "dagma_build_info", role="worker") == 1
    # The record is shared state: the server's own gauge shows it too.
    assert wait_for(
        lambda: sample(
            scrape(observed.metrics_url),
            "dagma_beat_last_success_timestamp_seconds",
            beat_job="federation-send-pending",
        ),
        "the beat job's last success in the server's metrics",
        timeout=10,
    ) == pytest.approx(time.time(), abs=120)


def test_prometheus_loads_the_alert_rules_and_evaluates_them_without_error(observed: Observed) -> None:
    def evaluated() -> list[dict[str, Any]]:
        rules = [r for g in observed.prometheus.api("rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules) else []

    rules = wait_for(evaluated, "the alert rules evaluated once", timeout=30)
    assert len(rules) == 8
    assert {(r["name"], r["health"], r.get("lastError", "")) for r in rules} == {
        (r["name"], "ok", "") for r in rules
    }

    # The suite's certificates live one day: the certificate alert is pending on its real series
    # (firing after its `for:`); nothing else is (the disk one aside: it is the test machine's
    # disk, not Dagma's doing).
    def pending() -> list[dict[str, Any]]:
        return [
            a
            for a in observed.prometheus.api("alerts")["alerts"]
            if a["labels"]["alertname"] != "DagmaDiskAlmostFull"
        ]

    # Both processes read the host's certificate file: each target has its alert.
    targets = {
        url.removeprefix("http://").removesuffix("/metrics")
        for url in (observed.metrics_url, observed.worker_metrics_url)
    }
    alerts = wait_for(lambda: len(pending()) == 2 and pending(), "the certificate alerts pending", timeout=30)
    assert {(a["labels"]["alertname"], a["state"], a["labels"]["instance"]) for a in alerts} == {
        ("DagmaCertificateExpiresSoon", "pending", target) for target in targets
    }
    assert all("expires in 23h" in a["annotations"]["summary"] for a in alerts)


def test_a_sent_message_counts_one_local_event_persisted(observed: Observed) -> None:
    alice = MatrixClient(observed.dagma.base_url).register(f"a{secrets.token_hex(3)}")
    room = alice.create_room()
    before = sample(scrape(observed.metrics_url), "dagma_events_persisted_total", origin="local")
    alice.send(room, "one more event")
    after = wait_for(
        lambda: (
            (v := sample(scrape(observed.metrics_url), "dagma_events_persisted_total", origin="local"))
            > before
            and v
        ),
        "the events persisted counter to move",
    )
    assert after == before + 1
    assert sample(scrape(observed.metrics_url), "dagma_events_persisted_total", origin="remote") == 0


def test_requests_are_counted_by_route_pattern_never_by_ids_or_tokens(observed: Observed) -> None:
    alice = MatrixClient(observed.dagma.base_url).register(f"a{secrets.token_hex(3)}")
    room = alice.create_room()
    route = "/_matrix/client/v3/rooms/{room_id}/messages"
    before = sample(scrape(observed.metrics_url), "dagma_http_requests_total", route=route, status="200")
    token = alice.access_token
    assert token
    # The token in the query string, as some clients still send it.
    r = httpx.get(
        f"{observed.dagma.base_url}/_matrix/client/v3/rooms/{q(room)}/messages",
        params={"access_token": token, "dir": "b"},
        timeout=10.0,
    )
    assert r.status_code == 200
    samples = scrape(observed.metrics_url)
    assert sample(samples, "dagma_http_requests_total", route=route, status="200", method="GET") == before + 1
    assert sample(samples, "dagma_http_request_duration_seconds_count", route=route, method="GET") >= 1
    text = httpx.get(observed.metrics_url, timeout=10.0).text
    for secret in (token, room, str(alice.user_id), q(room)):
        assert secret not in text
    # Unknown paths share one series, whatever their number.
    for _ in range(3):
        httpx.get(f"{observed.dagma.base_url}/_matrix/client/v3/nothing/{secrets.token_hex(8)}", timeout=10.0)
    routes = {
        dict(ls)["route"] for (n, ls) in scrape(observed.metrics_url) if n == "dagma_http_requests_total"
    }
    assert "unrecognized" in routes
    assert all(r.startswith("/") or r in ("unrecognized", "preflight", "unmatched") for r in routes)
    assert not [r for r in routes if "nothing" in r]


def test_the_access_line_names_route_status_times_and_user_never_the_token(observed: Observed) -> None:
    alice = MatrixClient(observed.dagma.base_url).register(f"a{secrets.token_hex(3)}")
    token = alice.access_token
    assert token
    r = httpx.get(
        f"{observed.dagma.base_url}/_matrix/client/v3/account/whoami",
        params={"access_token": token},
        timeout=10.0,
    )
    assert r.status_code == 200

    def line() -> dict[str, Any] | None:
        mine = [a for a in access_lines(observed.dagma) if a.get("requester") == alice.user_id]
        return next((a for a in mine if a["route"] == "/_matrix/client/v3/account/whoami"), None)

    entry = wait_for(line, "the whoami access line")
    assert entry["method"] == "GET"
    assert entry["status"] == 200
    assert entry["level"] == "INFO"
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] > 0
    assert isinstance(entry["db_ms"], float) and entry["db_ms"] > 0  # the token's look-up
    assert entry["db_queries"] >= 1
    assert entry["msg"].startswith("GET /_matrix/client/v3/account/whoami 200 ")
    # The direct views (served ahead of Django's handler) have theirs: PUT /send, and a /sync
    # long-poll whose client went away first (499).
    room = alice.create_room()
    alice.send(room, "direct")
    with pytest.raises(httpx.TimeoutException):
        httpx.get(
            f"{observed.dagma.base_url}/_matrix/client/v3/sync",
            params={"timeout": "30000", "since": alice.sync()["next_batch"]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=1.5,
        )

    def direct_lines() -> dict[str, dict[str, Any]] | None:
        mine = {a["route"]: a for a in access_lines(observed.dagma) if a.get("requester") == alice.user_id}
        send = "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}"
        sync = "/_matrix/client/v3/sync"
        return mine if send in mine and mine.get(sync, {}).get("status") == 499 else None

    direct = wait_for(direct_lines, "the access lines of PUT /send and of the abandoned /sync")
    assert direct["/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}"]["status"] == 200
    assert direct["/_matrix/client/v3/sync"]["duration_ms"] >= 1000
    log = observed.dagma.log_path.read_text()
    assert token not in log
    assert "access_token" not in log


def test_a_federation_transaction_is_timed_and_its_access_line_names_the_origin(observed: Observed) -> None:
    before = sample(scrape(observed.metrics_url), "dagma_federation_receive_duration_seconds_count")
    status, answer = observed.fed.send(observed.dagma, observed.ca)
    assert (status, answer) == (200, {"pdus": {}})
    samples = scrape(observed.metrics_url)
    assert sample(samples, "dagma_federation_receive_duration_seconds_count") == before + 1
    route = "/_matrix/federation/v1/send/{txn_id}"
    assert sample(samples, "dagma_http_requests_total", route=route, method="PUT", status="200") >= 1
    entry = wait_for(
        lambda: next((a for a in access_lines(observed.dagma) if a["route"] == route), None),
        "the /send access line",
    )
    assert entry["requester"] == observed.fed.server_name
    assert entry["status"] == 200


def test_the_shared_state_gauges_describe_the_server(observed: Observed) -> None:
    samples = scrape(observed.metrics_url)
    assert sample(samples, "dagma_database_size_bytes") > 0
    assert sample(samples, "dagma_disk_total_bytes", path="logs") > 0
    # The suite's certificates are valid for a day from their issue.
    cert = x509.load_pem_x509_certificate(observed.dagma.federation_tls[0].read_bytes())  # type: ignore[index]
    remaining = cert.not_valid_after_utc.timestamp() - time.time()
    assert abs(sample(samples, "dagma_tls_certificate_expiry_seconds") - remaining) < 60
    assert 0 <= sample(samples, "dagma_signing_key_age_seconds") < 3600
    assert sample(samples, "dagma_build_info", role="all") == 1
    assert sample(samples, "dagma_metrics_collection_failed") == 0


def test_a_second_process_on_the_same_metrics_port_stops_naming_the_option(observed: Observed) -> None:
    result = observed.dagma.manage("serve", "tribune")
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "metrics_port: cannot listen on 127.0.0.1 port" in err
    assert "--metrics-port" in err

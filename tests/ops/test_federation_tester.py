"""The federation tester and ``doctor``'s self-test against real processes: a Dagma with a TLS
federation listener (certificates from trustme), SRV records from a DNS server in the test
(dnslib), ``.well-known`` from an HTTPS server on loopback, and fake servers with broken set-ups."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dagcore.doctor import exit_code
from dagcore.doctor.federation_tester import FederationTester
from dagcore.federation.client import FederationPolicy
from dagcore.net.ssrf import IpPolicy
from dagcore.protocol import signing
from dagma_project.config import DEFAULT_IP_RANGE_BLACKLIST
from tests.federation.https_server import FakeHomeserver
from tests.ops.netfixtures import Certs, DnsFixture, fake_homeserver, json_answer, start_dns
from tests.support.live import LiveServer

LOOPBACK = ["127.0.0.0/8", "::1/128"]


@dataclass
class Setup:
    dagma: LiveServer
    dns: DnsFixture
    well_known: FakeHomeserver
    certs: Certs

    @property
    def fed_port(self) -> int:
        assert self.dagma.federation_port is not None
        return self.dagma.federation_port

    def run(self, *args: str) -> tuple[int, Any]:
        """``manage.py <args> --json`` with the Dagma's config: (exit code, parsed output)."""
        done = self.dagma.manage(*args, "--json")
        assert done.stdout, done.stderr.decode()[-2000:]
        return done.returncode, json.loads(done.stdout)

    def tester(self, name: str) -> tuple[int, dict[str, Any]]:
        """``manage.py federation_test NAME --json`` (a process with the Dagma's config)."""
        return self.run("federation_test", name)

    def tester_here(self, name: str) -> tuple[int, dict[str, Any]]:
        """The same service in this process, with the same settings: faster for the many
        broken set-ups (the servers it tests are as real)."""
        policy = FederationPolicy(
            ip_policy=IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST, LOOPBACK),
            custom_ca_files=(str(self.certs.ca_path),),
            dns_resolvers=(("127.0.0.1", self.dns.port),),
            well_known_port=self.well_known.port,
        )
        report = FederationTester(policy=policy, own_server_name="origin.test").run(name)
        return exit_code(report.status), report.as_json()


def steps(report: dict[str, Any]) -> dict[str, str]:
    return {s["step"]: s["status"] for s in report["steps"]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("fedtest")
    certs = Certs(work / "certs")
    dns = start_dns()
    well_known = FakeHomeserver(certs.issue("well-known", "localhost", "127.0.0.1"))
    own = certs.issue("dagma", "localhost", "127.0.0.1")
    dagma = LiveServer(
        work / "dagma",
        federation_tls=(own.cert_path, own.key_path),
        config={
            "federation_custom_ca_list": [str(certs.ca_path)],
            "ip_range_whitelist": LOOPBACK,
            "dns_resolvers": [dns.resolver_entry],
            "federation_well_known_port": well_known.port,
        },
    )
    # A server name without a port: other servers find the federation port through SRV.
    dagma.server_name = "localhost"
    well_known.routes["/.well-known/matrix/client"] = lambda _: json_answer(
        {"m.homeserver": {"base_url": dagma.base_url}}
    )
    try:
        dagma.start()
        yield Setup(dagma, dns, well_known, certs)
    finally:
        dagma.destroy()
        well_known.close()
        dns.close()


@pytest.fixture
def srv_fed(setup: Setup) -> Iterator[Setup]:
    """The good set-up: ``_matrix-fed._tcp.localhost`` names the federation listener, no delegation."""
    setup.dns.zone.records = {"_matrix-fed._tcp.localhost": [(10, 5, setup.fed_port, "localhost")]}
    setup.well_known.routes.pop("/.well-known/matrix/server", None)
    yield setup
    setup.dns.zone.records = {}
    setup.well_known.routes.pop("/.well-known/matrix/server", None)


def test_a_good_setup_passes_every_step(srv_fed: Setup) -> None:
    code, report = srv_fed.tester("localhost")
    assert code == 0, report
    assert report["status"] == "ok"
    assert steps(report) == {
        "name": "ok", "well-known": "ok", "srv": "ok", "addresses": "ok", "tls": "ok", "certificate": "ok",
        "keys": "ok", "version": "ok", "client-well-known": "ok",
    }  # fmt: skip
    by_step = {s["step"]: s for s in report["steps"]}
    assert by_step["srv"]["details"]["targets"] == [["localhost", srv_fed.fed_port]]
    # Our own name: the key answer must carry our key IDs.
    own_key_ids = [
        signing.key_id(k)
        for k in signing.read_signing_keys(Path(srv_fed.dagma.workdir / "localhost.signing.key").read_text())
    ]
    assert by_step["keys"]["details"]["key_ids"] == own_key_ids
    assert "_matrix-fed._tcp.localhost" in srv_fed.dns.zone.asked


def test_doctor_self_test_passes_and_keeps_each_result(srv_fed: Setup) -> None:
    code, out = srv_fed.run(
        "doctor", "--only", "database,migrations,redis,certificate,signing_key,federation,extremities"
    )
    assert out["status"] == "ok", out
    assert code == 0
    assert [c["name"] for c in out["checks"]] == [
        "database", "migrations", "redis", "certificate", "signing_key", "federation", "extremities",
    ]  # fmt: skip
    federation = next(c for c in out["checks"] if c["name"] == "federation")
    assert federation["details"]["server_name"] == "localhost"
    kept = srv_fed.dagma.query(
        "SELECT name, status FROM check_results WHERE name LIKE 'doctor.%%' ORDER BY id DESC LIMIT 7"
    )
    assert {name for name, _ in kept} == {f"doctor.{c['name']}" for c in out["checks"]}
    assert {status for _, status in kept} == {"ok"}


def test_only_the_deprecated_matrix_srv_record_warns(setup: Setup) -> None:
    setup.dns.zone.records = {"_matrix._tcp.localhost": [(10, 5, setup.fed_port, "localhost")]}
    try:
        code, report = setup.tester_here("localhost")
    finally:
        setup.dns.zone.records = {}
    assert steps(report)["srv"] == "warn"
    assert "deprecated" in next(s for s in report["steps"] if s["step"] == "srv")["summary"]
    assert report["status"] == "warn" and code == 1, report
    assert steps(report)["keys"] == "ok"


def test_without_srv_the_tester_falls_back_to_port_8448_as_the_spec_says(setup: Setup) -> None:
    setup.dns.zone.records = {}
    code, report = setup.tester_here("localhost")
    srv = next(s for s in report["steps"] if s["step"] == "srv")
    assert srv["status"] == "ok"
    assert srv["details"]["targets"] == [["localhost", 8448]]
    with socket.socket() as probe:
        nothing_on_8448 = probe.connect_ex(("127.0.0.1", 8448)) != 0
    if nothing_on_8448:
        assert steps(report)["tls"] == "fail" and code == 2
        assert "cannot connect" in next(s for s in report["steps"] if s["step"] == "tls")["summary"]


def test_a_well_known_delegation_is_followed(setup: Setup) -> None:
    setup.well_known.routes["/.well-known/matrix/server"] = lambda _: json_answer(
        {"m.server": f"localhost:{setup.fed_port}"}
    )
    try:
        code, report = setup.tester_here("localhost")
    finally:
        setup.well_known.routes.pop("/.well-known/matrix/server", None)
    assert code == 0, report
    assert steps(report)["well-known"] == "ok" and steps(report)["srv"] == "skip"
    assert steps(report)["keys"] == "ok"


@pytest.mark.parametrize(
    "answer",
    [json_answer({"m.server": "bad name!"}), (200, {}, b"<html>not json</html>")],
    ids=["invalid m.server", "not JSON"],
)
def test_a_wrong_well_known_fails_by_name(setup: Setup, answer: Any) -> None:
    setup.well_known.routes["/.well-known/matrix/server"] = lambda _: answer
    try:
        code, report = (
            setup.tester("localhost")
            if answer[0] == 200 and answer[2].startswith(b"{")
            else (setup.tester_here("localhost"))
        )
    finally:
        setup.well_known.routes.pop("/.well-known/matrix/server", None)
    assert code == 2
    assert steps(report)["well-known"] == "fail", report


def _fake(setup: Setup, *names: str, **kwargs: Any) -> FakeHomeserver:
    cert_names = kwargs.pop("cert_names", ("localhost", "127.0.0.1"))
    cert = setup.certs.issue(f"fake-{len(list(setup.certs.directory.iterdir()))}", *cert_names, **kwargs)
    return fake_homeserver(cert, server_name_of=lambda port: f"localhost:{port}")


def test_an_expired_certificate_fails_by_name(setup: Setup) -> None:
    fake = _fake(setup, expired=True)
    try:
        code, report = setup.tester_here(f"localhost:{fake.port}")
    finally:
        fake.close()
    assert code == 2
    assert steps(report)["tls"] == "fail" and steps(report)["certificate"] == "fail", report
    tls = next(s for s in report["steps"] if s["step"] == "tls")
    assert "expired" in tls["summary"]


def test_a_certificate_for_another_host_fails_by_name(setup: Setup) -> None:
    fake = _fake(setup, cert_names=("other.example",))
    try:
        code, report = setup.tester_here(f"localhost:{fake.port}")
    finally:
        fake.close()
    assert code == 2
    tls = next(s for s in report["steps"] if s["step"] == "tls")
    assert tls["status"] == "fail" and "mismatch" in tls["summary"].lower(), tls
    assert tls["details"]["certificate"]["names"] == ["other.example"]


def test_a_certificate_expiring_within_14_days_warns(setup: Setup) -> None:
    fake = _fake(setup, days_valid=10)
    try:
        code, report = setup.tester_here(f"localhost:{fake.port}")
    finally:
        fake.close()
    assert steps(report)["tls"] == "ok" and steps(report)["certificate"] == "warn", report
    assert code == 1


def test_a_key_answer_signed_by_another_key_fails_by_name(setup: Setup) -> None:
    cert = setup.certs.issue("fake-forged", "localhost", "127.0.0.1")
    fake = fake_homeserver(
        cert, server_name_of=lambda port: f"localhost:{port}", signed_by=signing.generate_signing_key()
    )
    try:
        code, report = setup.tester_here(f"localhost:{fake.port}")
    finally:
        fake.close()
    assert code == 2
    keys = next(s for s in report["steps"] if s["step"] == "keys")
    assert keys["status"] == "fail" and "not self-signed" in keys["summary"], keys
    assert steps(report)["tls"] == "ok" and steps(report)["version"] == "ok"


def test_an_invalid_server_name_fails_without_touching_the_network(setup: Setup) -> None:
    code, report = setup.tester_here("not a server!")
    assert code == 2
    assert report["steps"] == [
        {
            "step": "name",
            "status": "fail",
            "summary": "'not a server!' is not a valid server name",
            "details": {},
        }
    ]

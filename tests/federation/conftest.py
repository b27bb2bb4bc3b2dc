"""Fixtures for federation tests: a test CA, a fake HTTPS homeserver, a second signing identity."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dagcore.federation.client import FederationClient, FederationPolicy
from dagcore.federation.discovery import ServerResolver
from dagcore.net.ssrf import IpPolicy
from dagcore.protocol import signing
from dagma_project.config import DEFAULT_IP_RANGE_BLACKLIST
from tests.federation.certs import TestCA
from tests.federation.fakes import DictCache, FakeDns, FakeWellKnown
from tests.federation.https_server import FakeHomeserver
from tests.support.live import LiveServer

LOOPBACK = ["127.0.0.0/8", "::1/128"]


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def fake_server(test_ca: TestCA) -> Iterator[FakeHomeserver]:
    server = FakeHomeserver(test_ca.issue("localhost", "127.0.0.1"))
    yield server
    server.close()


def loopback_policy(ca: TestCA, **kwargs: object) -> FederationPolicy:
    return FederationPolicy(
        ip_policy=IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST, LOOPBACK),
        custom_ca_files=(str(ca.cert_path),),
        **kwargs,  # type: ignore[arg-type]
    )


def make_client(
    policy: FederationPolicy,
    *,
    server_name: str = "origin.test",
    signing_key: signing.SigningKey | None = None,
    dns: FakeDns | None = None,
    well_known: FakeWellKnown | None = None,
) -> FederationClient:
    return FederationClient(
        server_name=server_name,
        signing_key=signing_key or signing.generate_signing_key(),
        policy=policy,
        resolver=ServerResolver(
            srv=dns or FakeDns(), well_known=well_known or FakeWellKnown(), cache=DictCache()
        ),
    )


def federating_dagma(
    ca: TestCA, workdir: Path, *, stem: str, config: dict[str, Any] | None = None, **kwargs: Any
) -> LiveServer:
    """A Dagma (not started) whose federation listener has a certificate of the suite's CA, which
    trusts that CA and may reach loopback: its server name is ``localhost:<port>``."""
    cert = ca.issue("localhost", "127.0.0.1", stem=stem)
    return LiveServer(
        workdir,
        federation_tls=(cert.cert_path, cert.key_path),
        config={
            "federation_custom_ca_list": [str(ca.cert_path)],
            "ip_range_whitelist": LOOPBACK,
            **(config or {}),
        },
        **kwargs,
    )


@contextmanager
def running(server: LiveServer) -> Iterator[LiveServer]:
    """``server`` started, and destroyed (its database too) afterwards."""
    try:
        yield server.start()
    finally:
        server.destroy()

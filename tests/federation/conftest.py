"""Fixtures for federation tests: a test CA, a fake HTTPS homeserver, a second signing identity."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dagcore.federation.client import FederationClient, FederationPolicy
from dagcore.federation.discovery import ServerResolver
from dagcore.net.ssrf import IpPolicy
from dagcore.protocol import signing
from dagma_project.config import DEFAULT_IP_RANGE_BLACKLIST
from tests.federation.certs import TestCA
from tests.federation.fakes import DictCache, FakeDns, FakeWellKnown
from tests.federation.https_server import FakeHomeserver

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

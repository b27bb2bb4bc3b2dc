"""The signed outbound client: what it sends, where it may connect, and what it accepts back."""

from __future__ import annotations

import json
import threading

import pytest

from dagcore.federation.client import (
    FederationBadResponse,
    FederationBlocked,
    FederationHttpError,
    FederationPolicy,
    FederationUnreachable,
    HttpsTransport,
    HttpsWellKnownFetcher,
    encode_path,
)
from dagcore.net.ssrf import IpPolicy
from dagcore.protocol import signing
from dagcore.protocol.request_auth import verify_request
from dagma_project.config import DEFAULT_IP_RANGE_BLACKLIST
from tests.federation.certs import TestCA
from tests.federation.conftest import loopback_policy, make_client
from tests.federation.fakes import FakeDns, FakeWellKnown
from tests.federation.https_server import FakeHomeserver


def ok(body: object, headers: dict[str, str] | None = None):
    return lambda _r: (200, headers or {}, json.dumps(body).encode())


def test_a_signed_request_verifies_against_the_raw_uri_with_host_and_sni_as_the_server_name(
    fake_server: FakeHomeserver, test_ca: TestCA
) -> None:
    key = signing.generate_signing_key()
    dest = f"localhost:{fake_server.port}"
    path = encode_path("/_matrix/federation/v1/query/{}", "a/b c")
    fake_server.routes[path + "?field=x%2Fy"] = ok({"ok": True})
    fake_server.routes[path] = ok({"posted": True})
    client = make_client(loopback_policy(test_ca), signing_key=key)
    try:
        assert client.get_json(dest, path, query={"field": "x/y"}) == {"ok": True}
        assert client.put_json(dest, path, {"n": 1}) == {"posted": True}
    finally:
        client.close()
    get, put = fake_server.requests
    assert get.path == "/_matrix/federation/v1/query/a%2Fb%20c?field=x%2Fy"
    assert get.headers["host"] == dest and get.sni == "localhost"
    for record, content in ((get, None), (put, {"n": 1})):
        origin = verify_request(
            method=record.method,
            uri=record.path,
            content=content,  # what the client sent, parsed by the receiver below
            authorization=record.authorization,
            our_server_name=dest,
            get_verify_key=lambda _s, _k, _t: signing.get_verify_key(key),
            now_ms=0,
        )
        assert origin == "origin.test"
    assert json.loads(put.body) == {"n": 1}


@pytest.mark.parametrize("dest", ["localhost:{port}", "127.0.0.1:{port}", "[::ffff:127.0.0.1]:{port}"])
def test_private_addresses_are_refused_before_connecting(fake_server: FakeHomeserver, test_ca, dest) -> None:
    policy = FederationPolicy(
        ip_policy=IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST), custom_ca_files=(str(test_ca.cert_path),)
    )
    client = make_client(policy)
    with pytest.raises(FederationBlocked) as err:
        client.get_json(dest.format(port=fake_server.port), "/_matrix/federation/v1/version")
    assert err.value.server_name == dest.format(port=fake_server.port)
    assert fake_server.requests == []


def test_a_server_outside_the_domain_whitelist_is_not_even_looked_up(test_ca: TestCA) -> None:
    dns, wk = FakeDns(), FakeWellKnown()
    client = make_client(
        loopback_policy(test_ca, domain_whitelist=frozenset({"friend.test"})), dns=dns, well_known=wk
    )
    with pytest.raises(FederationBlocked) as err:
        client.get_json("stranger.test", "/_matrix/federation/v1/version")
    assert "federation_domain_whitelist" in str(err.value) and err.value.server_name == "stranger.test"
    assert dns.asked == [] and wk.fetched == []


def test_an_answer_larger_than_the_cap_is_refused(fake_server: FakeHomeserver, test_ca: TestCA) -> None:
    fake_server.routes["/big"] = ok({"x": "y" * 100_000})
    client = make_client(loopback_policy(test_ca))
    with pytest.raises(FederationBadResponse) as err:
        client.get_json(f"localhost:{fake_server.port}", "/big", max_bytes=10_000)
    assert "larger than 10000 bytes" in str(err.value)


def test_a_server_that_does_not_answer_in_time_is_unreachable(fake_server: FakeHomeserver, test_ca) -> None:
    fake_server.hold = threading.Event()
    client = make_client(loopback_policy(test_ca))
    with pytest.raises(FederationUnreachable):
        client.get_json(f"localhost:{fake_server.port}", "/slow", timeout=0.5)


def test_a_certificate_from_an_untrusted_authority_is_refused_unless_verification_is_off(
    fake_server: FakeHomeserver, tmp_path
) -> None:
    other_ca = TestCA(tmp_path / "other")
    fake_server.routes["/x"] = ok({})
    with pytest.raises(FederationUnreachable) as err:
        make_client(loopback_policy(other_ca)).get_json(f"localhost:{fake_server.port}", "/x")
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    unverified = make_client(loopback_policy(other_ca, verify_certificates=False))
    assert unverified.get_json(f"localhost:{fake_server.port}", "/x") == {}


def test_a_certificate_for_another_name_is_refused(test_ca: TestCA) -> None:
    server = FakeHomeserver(test_ca.issue("elsewhere.test", stem="elsewhere"))
    try:
        with pytest.raises(FederationUnreachable):
            make_client(loopback_policy(test_ca)).get_json(f"localhost:{server.port}", "/x")
    finally:
        server.close()


def test_an_error_status_is_raised_with_its_matrix_error(fake_server: FakeHomeserver, test_ca) -> None:
    fake_server.routes["/nope"] = lambda _r: (403, {}, b'{"errcode":"M_FORBIDDEN","error":"no"}')
    with pytest.raises(FederationHttpError) as err:
        make_client(loopback_policy(test_ca)).get_json(f"localhost:{fake_server.port}", "/nope")
    assert err.value.status == 403 and err.value.body == {"errcode": "M_FORBIDDEN", "error": "no"}


def _fetcher(server: FakeHomeserver, policy: FederationPolicy) -> HttpsWellKnownFetcher:
    return HttpsWellKnownFetcher(HttpsTransport(policy), port=server.port)


def test_well_known_is_fetched_with_its_cache_period_following_redirects(fake_server, test_ca) -> None:
    fake_server.routes["/.well-known/matrix/server"] = lambda _r: (302, {"Location": "/moved"}, b"")
    fake_server.routes["/moved"] = ok(
        {"m.server": "matrix.example.org:443"}, {"Cache-Control": "max-age=600"}
    )
    answer = _fetcher(fake_server, loopback_policy(test_ca)).fetch_well_known("localhost", "localhost")
    assert (answer.m_server, answer.cache_ms) == ("matrix.example.org:443", 600_000)
    assert [r.path for r in fake_server.requests] == ["/.well-known/matrix/server", "/moved"]
    assert fake_server.requests[0].headers["host"] == f"localhost:{fake_server.port}"


def test_well_known_redirect_loops_oversized_and_invalid_answers_mean_no_delegation(
    fake_server, test_ca
) -> None:
    fetcher = _fetcher(fake_server, loopback_policy(test_ca))
    route = "/.well-known/matrix/server"
    cases = [
        lambda _r: (301, {"Location": route}, b""),
        ok({"m.server": "x" * 60_000}),
        lambda _r: (200, {}, b"not json"),
        ok({"m.server": 1}),
        lambda _r: (404, {}, b"{}"),
    ]
    for handler in cases:
        fake_server.routes[route] = handler
        assert fetcher.fetch_well_known("localhost", "localhost").m_server is None


def test_well_known_of_a_private_address_is_refused_not_treated_as_missing(fake_server, test_ca) -> None:
    policy = FederationPolicy(
        ip_policy=IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST), custom_ca_files=(str(test_ca.cert_path),)
    )
    with pytest.raises(FederationBlocked):
        _fetcher(fake_server, policy).fetch_well_known("localhost", "localhost")
    assert fake_server.requests == []


def test_a_well_known_redirect_to_a_private_address_is_refused(fake_server: FakeHomeserver, test_ca) -> None:
    """Each hop is checked: a public .well-known cannot bounce us onto the LAN."""
    policy = FederationPolicy(
        ip_policy=IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.1/32"]),
        custom_ca_files=(str(test_ca.cert_path),),
    )
    fake_server.routes["/.well-known/matrix/server"] = lambda _r: (
        302, {"Location": f"https://10.0.0.1:{fake_server.port}/x"}, b"",
    )  # fmt: skip
    with pytest.raises(FederationBlocked):
        _fetcher(fake_server, policy).fetch_well_known("localhost", "localhost")

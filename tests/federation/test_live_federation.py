"""Two Dagma processes over TLS: discovery, key fetching and the notary, end to end.

Both servers are named ``localhost:<federation port>`` (explicit port: no DNS or
.well-known needed) and serve federation on a TLS listener with a certificate
from a test CA that each trusts through ``federation_custom_ca_list``;
loopback is allowed through ``ip_range_whitelist`` (it is blocked by default).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from dagcore.federation.client import FederationClient
from dagcore.federation.keyring import KeyRequest, Keyring, TrustedKeyServer
from dagcore.protocol import signing
from dagcore.store import server_keys as key_store
from tests.federation.certs import TestCA
from tests.federation.conftest import LOOPBACK, loopback_policy
from tests.support.live import LiveServer

pytestmark = pytest.mark.live


def _config(ca: TestCA) -> dict[str, Any]:
    return {"federation_custom_ca_list": [str(ca.cert_path)], "ip_range_whitelist": LOOPBACK}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer, TestCA]]:
    root = tmp_path_factory.mktemp("fed")
    ca = TestCA(root / "ca")
    made: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            cert = ca.issue("localhost", "127.0.0.1", stem=name)
            server = LiveServer(
                root / name, federation_tls=(cert.cert_path, cert.key_path), config=_config(ca)
            )
            made.append(server)
            server.start()
        yield made[0], made[1], ca
    finally:
        for server in made:
            server.destroy()


def _https(ca: TestCA) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(ca.cert_path)), timeout=30)


def _self_keys(http: httpx.Client, server: LiveServer) -> dict[str, signing.VerifyKey]:
    body = http.get(f"{server.federation_url}/_matrix/key/v2/server").json()
    return {kid: signing.decode_verify_key_base64(kid, v["key"]) for kid, v in body["verify_keys"].items()}


def _check_signed_by(answer: dict[str, Any], server_name: str, keys: dict[str, signing.VerifyKey]) -> None:
    kid = next(k for k in answer["signatures"][server_name] if k in keys)
    signing.verify_json_signature(answer, server_name=server_name, key_id=kid, verify_key=keys[kid])


def test_federation_is_served_over_tls_and_well_known_names_that_port(servers) -> None:
    a, _b, ca = servers
    with _https(ca) as http:
        keys = http.get(f"{a.federation_url}/_matrix/key/v2/server").json()
        assert keys["server_name"] == a.server_name and keys["old_verify_keys"] == {}
        version = http.get(f"{a.federation_url}/_matrix/federation/v1/version").json()
        assert version["server"]["name"] == "Dagma"
        well_known = http.get(f"{a.federation_url}/.well-known/matrix/server").json()
    assert well_known == {"m.server": f"localhost:{a.federation_port}"}
    # The client listener does not serve federation.
    assert httpx.get(f"{a.base_url}/_matrix/key/v2/server").status_code == 404


def test_a_notary_fetches_the_other_servers_keys_through_discovery_and_signs_them(servers) -> None:
    a, b, ca = servers
    with _https(ca) as http:
        a_keys, b_keys = _self_keys(http, a), _self_keys(http, b)
        posted = http.post(
            f"{a.federation_url}/_matrix/key/v2/query",
            json={"server_keys": {b.server_name: {next(iter(b_keys)): {}}}},
        ).json()
        got = http.get(f"{a.federation_url}/_matrix/key/v2/query/{quote(b.server_name, safe='')}").json()
    for body in (posted, got):
        [answer] = body["server_keys"]
        assert answer["server_name"] == b.server_name
        assert set(answer["verify_keys"]) == set(b_keys)
        _check_signed_by(answer, b.server_name, b_keys)
        _check_signed_by(answer, a.server_name, a_keys)


def test_a_notary_answers_nothing_for_a_server_it_cannot_reach(servers) -> None:
    a, _b, ca = servers
    with _https(ca) as http:
        body = http.post(
            f"{a.federation_url}/_matrix/key/v2/query", json={"server_keys": {"localhost:1": {}}}
        ).json()
    assert body == {"server_keys": []}


@pytest.mark.django_db
def test_a_keyring_checks_a_live_notarys_signature_and_caches_what_it_vouches_for(servers) -> None:
    a, b, ca = servers
    with _https(ca) as http:
        a_keys, b_keys = _self_keys(http, a), _self_keys(http, b)
    client = FederationClient(
        server_name="tester.test", signing_key=signing.generate_signing_key(), policy=loopback_policy(ca)
    )
    try:
        ring = Keyring(
            transport=client,
            trusted_key_servers=[TrustedKeyServer(a.server_name, a_keys)],
            our_server_name="tester.test",
            our_key_response=lambda now: {},
        )
        kid = next(iter(b_keys))
        found = ring.get_verify_keys([KeyRequest(b.server_name, kid, 0)])
        assert signing.encode_verify_key_base64(
            found[(b.server_name, kid)]
        ) == signing.encode_verify_key_base64(b_keys[kid])
        stored = key_store.get_server_keys(keys=[(b.server_name, kid)])[(b.server_name, kid)]
        assert stored.from_server == a.server_name
        # A notary we hold the wrong key for is not believed: B itself is asked (and its
        # answer replaces the notary's in the cache), and a key B does not have stays unknown.
        wrong = signing.generate_signing_key()
        distrusted = Keyring(
            transport=client,
            trusted_key_servers=[
                TrustedKeyServer(a.server_name, {signing.key_id(wrong): signing.get_verify_key(wrong)})
            ],
            our_server_name="tester.test",
            our_key_response=lambda now: {},
        )
        found = distrusted.get_verify_keys([KeyRequest(b.server_name, "ed25519:other", 0)])
        assert found == {}
        assert key_store.get_server_keys(keys=[(b.server_name, kid)])[(b.server_name, kid)].from_server == (
            b.server_name
        )
    finally:
        client.close()


@pytest.mark.parametrize(
    ("break_it", "named"),
    [
        (lambda cert, key: cert.unlink(), "tls_certificate_path"),
        (lambda cert, key: key.unlink(), "tls_private_key_path"),
        (lambda cert, key: key.write_text("not a key"), "tls_certificate_path / tls_private_key_path"),
    ],
)
def test_a_missing_or_unusable_certificate_stops_start_up_naming_the_option(
    tmp_path: Path, break_it, named: str
) -> None:
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue("localhost")
    break_it(cert.cert_path, cert.key_path)
    server = LiveServer(
        tmp_path / "srv", database="sqlite", redis=False, federation_tls=(cert.cert_path, cert.key_path)
    )
    with pytest.raises(RuntimeError) as err:
        server.start()
    assert f"{named}:" in str(err.value)
    assert server.proc is not None and server.proc.returncode != 0

"""Embassy's X-Matrix check of inbound federation requests (spec: "Request Authentication")."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest
from django.test import RequestFactory

from dagcore.federation.keyring import Keyring
from dagcore.http.errors import MatrixError
from dagcore.protocol import signing
from dagcore.protocol.request_auth import authorization_header
from dagcore.server_keys import get_server_name
from embassy import http as embassy_http
from embassy.http import FederationRequest, authenticate_request, federation_endpoint, raw_request_uri
from tests.federation.fakes import Clock, FakeFederation, FakeKeyServer

pytestmark = pytest.mark.django_db

PATH = "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aremote.test"


@pytest.fixture
def remote() -> tuple[Keyring, FakeKeyServer]:
    net = FakeFederation(Clock())
    remote = net.add("remote.test")
    ring = Keyring(
        transport=net,
        our_server_name=get_server_name(),
        our_key_response=FakeKeyServer(get_server_name(), [signing.generate_signing_key()]).response,
    )
    # The fake clock stands still in 2023; requests are checked at the real time, so keep keys valid.
    remote.valid_for_ms = 10**13
    return ring, remote


def signed(
    key: signing.SigningKey,
    *,
    method: str = "GET",
    uri: str = PATH,
    origin: str = "remote.test",
    destination: str | None = None,
    content: Any = None,
) -> str:
    return authorization_header(
        method=method,
        uri=uri,
        origin=origin,
        destination=destination or get_server_name(),
        signing_key=key,
        content=content,
    )


def _request(header: str | None, *, method: str = "get", body: Any = None) -> HttpRequest:
    extra: dict[str, Any] = {"HTTP_AUTHORIZATION": header} if header else {}
    if body is None:
        request: HttpRequest = getattr(RequestFactory(), method)(PATH, **extra)
        return request
    return RequestFactory().generic(
        method.upper(), PATH, json.dumps(body).encode(), content_type="application/json", **extra
    )


def test_a_request_signed_by_the_origins_key_authenticates_as_the_origin(remote) -> None:
    ring, server = remote
    request = _request(signed(server.keys[0]))
    assert authenticate_request(request, body=None, keyring=ring) == "remote.test"


def test_the_body_is_covered_by_the_signature(remote) -> None:
    ring, server = remote
    content: dict[str, list[object]] = {"pdus": [], "edus": []}
    header = signed(server.keys[0], method="PUT", content=content)
    assert authenticate_request(_request(header, method="put", body=content), body=content, keyring=ring)
    with pytest.raises(MatrixError) as err:
        authenticate_request(_request(header, method="put", body=content), body={"pdus": [1]}, keyring=ring)
    assert (err.value.status, err.value.errcode) == (401, "M_UNAUTHORIZED")


@pytest.mark.parametrize(
    "case",
    ["missing", "garbage", "wrong destination", "wrong uri", "wrong method", "unknown key", "forged"],
)
def test_bad_or_missing_credentials_are_401_m_unauthorized(remote, case: str) -> None:
    ring, server = remote
    header: str | None = {
        "missing": lambda: None,
        "garbage": lambda: "X-Matrix origin=",
        "wrong destination": lambda: signed(server.keys[0], destination="other.test"),
        "wrong uri": lambda: signed(server.keys[0], uri="/_matrix/federation/v1/query/directory"),
        "wrong method": lambda: signed(server.keys[0], method="POST"),
        "unknown key": lambda: signed(signing.generate_signing_key()),
        "forged": lambda: signed(server.keys[0]).replace('sig="', 'sig="AAAA'),
    }[case]()
    with pytest.raises(MatrixError) as err:
        authenticate_request(_request(header), body=None, keyring=ring)
    assert (err.value.status, err.value.errcode) == (401, "M_UNAUTHORIZED")


def test_an_origin_outside_the_domain_whitelist_is_403_before_its_keys_are_fetched(remote, settings) -> None:
    ring, server = remote
    settings.DAGMA = dataclasses.replace(settings.DAGMA, federation_domain_whitelist=["friend.test"])
    with pytest.raises(MatrixError) as err:
        authenticate_request(_request(signed(server.keys[0])), body=None, keyring=ring)
    assert (err.value.status, err.value.errcode) == (403, "M_FORBIDDEN")
    assert isinstance(ring.transport, FakeFederation) and ring.transport.calls == []


def test_the_signature_is_checked_against_the_raw_uri_under_asgi(remote) -> None:
    """``%2F`` inside an identifier must stay as sent: the decoded path would not verify."""
    ring, server = remote
    raw = "/_matrix/federation/v1/event/%24abc%2Fdef"
    headers = [
        (b"authorization", signed(signing.generate_signing_key(), uri=raw).encode()),  # a key we cannot find
        (b"authorization", signed(server.keys[0], uri=raw).encode()),
    ]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/_matrix/federation/v1/event/$abc/def",
        "raw_path": raw.encode(),
        "query_string": b"",
        "headers": headers,
    }
    request = ASGIRequest(scope, io.BytesIO(b""))
    assert raw_request_uri(request) == raw
    assert authenticate_request(request, body=None, keyring=ring) == "remote.test"


def test_an_authenticated_endpoint_answers_matrix_errors_as_json(remote, monkeypatch) -> None:
    ring, server = remote
    monkeypatch.setattr(embassy_http, "get_keyring", lambda: ring)

    @federation_endpoint(authenticated=True)
    def whoami(fed: FederationRequest) -> dict[str, Any]:
        return {"origin": fed.origin}

    ok = whoami(_request(signed(server.keys[0])))
    assert (ok.status_code, json.loads(ok.content)) == (200, {"origin": "remote.test"})
    refused = whoami(_request(None))
    assert refused.status_code == 401 and json.loads(refused.content)["errcode"] == "M_UNAUTHORIZED"
    wrong_method = whoami(_request(signed(server.keys[0], method="POST"), method="post"))
    assert wrong_method.status_code == 405


def test_an_authenticated_request_ends_our_back_off_from_its_origin(remote, monkeypatch) -> None:
    """Any signed request (not only /send) tells us the origin is up: its queue is tried now."""
    ring, server = remote
    monkeypatch.setattr(embassy_http, "get_keyring", lambda: ring)
    contacted: list[str] = []
    monkeypatch.setattr(embassy_http, "note_peer_contact", contacted.append)

    @federation_endpoint(authenticated=True)
    def state_ids(fed: FederationRequest) -> dict[str, Any]:
        return {}

    assert state_ids(_request(signed(server.keys[0]))).status_code == 200
    assert contacted == ["remote.test"]
    assert state_ids(_request(None)).status_code == 401
    assert contacted == ["remote.test"]  # an unauthenticated request proves nothing

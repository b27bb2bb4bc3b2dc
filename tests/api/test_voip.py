"""TURN credentials for calls (``GET /voip/turnServer``) with Synapse's option names and scheme."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator

import pytest

from tests.support.client import MatrixClient
from tests.support.live import LiveServer

pytestmark = pytest.mark.live

URIS = ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349?transport=tcp"]
SECRET = "coturn-static-auth-secret"


@pytest.fixture(scope="module")
def turn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    config = {
        "turn_uris": URIS,
        "turn_shared_secret": SECRET,
        "turn_user_lifetime": "1d",
        "turn_allow_guests": False,
        "allow_guest_access": True,
    }
    server = LiveServer(tmp_path_factory.mktemp("turn"), config=config).start()
    yield server
    server.destroy()


def test_without_a_turn_server_the_answer_is_empty(make_client) -> None:
    """Synapse's answer, which Element and matrix-js-sdk read as "no TURN server"."""
    alice = make_client()
    assert alice.get("/voip/turnServer").json == {}
    assert alice.get("/voip/turnServer", auth=False, expect=401).json["errcode"] == "M_MISSING_TOKEN"


def test_shared_secret_credentials_are_the_turn_rest_api_scheme(turn_server: LiveServer) -> None:
    alice = MatrixClient(turn_server.base_url).register()
    creds = alice.get("/voip/turnServer", spec="/voip/turnServer").json
    assert creds["uris"] == URIS and creds["ttl"] == 86400
    expiry, _, user_id = creds["username"].partition(":")
    assert user_id == alice.user_id
    assert abs(int(expiry) - (time.time() + 86400)) < 600
    # What coturn computes from its static-auth-secret for this username:
    expected = base64.b64encode(hmac.new(SECRET.encode(), creds["username"].encode(), hashlib.sha1).digest())
    assert creds["password"] == expected.decode()


def test_guests_are_refused_when_configured(turn_server: LiveServer) -> None:
    guest = MatrixClient(turn_server.base_url)
    guest.access_token = guest.post("/register", {}, params={"kind": "guest"}, auth=False).json[
        "access_token"
    ]
    assert guest.get("/voip/turnServer", expect=403).json["errcode"] == "M_FORBIDDEN"


def test_fixed_credentials(tmp_path) -> None:
    config = {"turn_uris": URIS[:1], "turn_username": "dagma", "turn_password": "s3cret"}
    server = LiveServer(tmp_path, config=config).start()
    try:
        alice = MatrixClient(server.base_url).register()
        creds = alice.get("/voip/turnServer", spec="/voip/turnServer").json
        assert creds == {"username": "dagma", "password": "s3cret", "uris": URIS[:1], "ttl": 3600}
    finally:
        server.destroy()

"""Shared-secret registration on Politburo (``/_synapse/admin/v1/register``), the protocol of
Synapse's ``register_new_matrix_user``: the HMAC is computed here exactly as that tool does."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.client import MatrixClient
from tests.support.live import LiveServer, start_with_politburo

SECRET = "shared-secret-for-tests"


def mac_of(nonce: str, user: str, password: str, admin: bool, secret: str = SECRET) -> str:
    """What ``register_new_matrix_user`` sends."""
    mac = hmac.new(key=secret.encode("utf8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf8"))
    mac.update(b"\x00")
    mac.update(user.encode("utf8"))
    mac.update(b"\x00")
    mac.update(password.encode("utf8"))
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    return mac.hexdigest()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    server = LiveServer(tmp_path_factory.mktemp("admin"), config={"registration_shared_secret": SECRET})
    politburo = start_with_politburo(server)
    try:
        yield server, politburo.base_url + "/_synapse/admin/v1/register"
    finally:
        politburo.stop()
        server.destroy()


def _register(url: str, **overrides: Any) -> httpx.Response:
    nonce = httpx.get(url).json()["nonce"]
    body = {"nonce": nonce, "username": "carol", "password": "a long password", "admin": False}
    body.update(overrides)
    body.setdefault("mac", mac_of(body["nonce"], body["username"], body["password"], body["admin"]))
    return httpx.post(url, json=body)


def test_an_account_made_with_the_shared_secret_can_log_in(servers) -> None:
    server, url = servers
    r = _register(url, username="adminuser", admin=True, password="admin password 1")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["user_id"] == "@adminuser:localhost" and answer["home_server"] == "localhost"
    client = MatrixClient(server.base_url, answer["access_token"])
    assert client.get("/account/whoami").json["user_id"] == "@adminuser:localhost"
    login = MatrixClient(server.base_url).post(
        "/login",
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "adminuser"},
         "password": "admin password 1"},
        auth=False,
    )  # fmt: skip
    assert login.json["user_id"] == "@adminuser:localhost"


def test_a_wrong_mac_a_reused_nonce_and_bad_input_are_refused(servers) -> None:
    _, url = servers
    wrong = _register(url, username="mallory", mac=mac_of("x", "mallory", "pw", False, secret="guess"))
    assert wrong.status_code == 403 and wrong.json()["errcode"] == "M_FORBIDDEN"
    # A nonce works once.
    nonce = httpx.get(url).json()["nonce"]
    body = {"nonce": nonce, "username": "dave", "password": "a long password", "admin": False,
            "mac": mac_of(nonce, "dave", "a long password", False)}  # fmt: skip
    assert httpx.post(url, json=body).status_code == 200
    again = httpx.post(
        url, json={**body, "username": "dave2", "mac": mac_of(nonce, "dave2", "a long password", False)}
    )
    assert again.status_code == 400 and again.json()["error"] == "unrecognised nonce"
    # Admin flag is covered by the MAC: flipping it breaks it.
    flipped = _register(url, username="erin", admin=True, mac=mac_of("n", "erin", "a long password", False))
    assert flipped.status_code == 403
    assert _register(url, username="Upper").json()["errcode"] == "M_INVALID_USERNAME"
    assert _register(url, username="carol").status_code == 200  # control
    assert _register(url, username="carol").json()["errcode"] == "M_USER_IN_USE"
    assert httpx.post(url, content=b"{bad").json()["errcode"] == "M_NOT_JSON"


def test_without_a_secret_shared_secret_registration_is_off(tmp_path: Path) -> None:
    # generate_config writes a random secret, as Synapse does; null turns the endpoint off.
    server = LiveServer(tmp_path, config={"registration_shared_secret": None})
    politburo = start_with_politburo(server)
    try:
        r = httpx.get(politburo.base_url + "/_synapse/admin/v1/register")
        assert r.status_code == 400 and "not enabled" in r.json()["error"]
    finally:
        politburo.stop()
        server.destroy()

"""Embassy's key endpoints in-process: our keys with old_verify_keys, and notary input checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from django.test import Client

from dagcore.clock import now_ms
from dagcore.protocol import signing
from dagcore.server_keys import get_old_verify_keys, get_server_name, get_signing_keys
from dagma_project.config import ConfigError, build_config

# The quick start federates on SQLite too: the key cache's upserts must work there.
pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


@pytest.fixture
def retired(settings) -> Iterator[signing.SigningKey]:
    key = signing.generate_signing_key()
    settings.DAGMA = dataclasses.replace(
        settings.DAGMA,
        old_signing_keys={
            signing.key_id(key): {"key": signing.encode_verify_key_base64(key), "expired_ts": 1234}
        },
    )
    get_old_verify_keys.cache_clear()
    yield key
    get_old_verify_keys.cache_clear()


def test_our_key_answer_lists_retired_keys_under_old_verify_keys_and_is_self_signed(retired) -> None:
    body = Client().get("/_matrix/key/v2/server").json()
    assert body["old_verify_keys"] == {
        signing.key_id(retired): {"key": signing.encode_verify_key_base64(retired), "expired_ts": 1234}
    }
    assert body["valid_until_ts"] > now_ms()
    for key in get_signing_keys():
        signing.verify_json_signature(
            body,
            server_name=get_server_name(),
            key_id=signing.key_id(key),
            verify_key=signing.get_verify_key(key),
        )


def test_the_notary_answers_for_this_server_itself_without_fetching() -> None:
    client = Client()
    body = client.post(
        "/_matrix/key/v2/query", {"server_keys": {get_server_name(): {}}}, content_type="application/json"
    ).json()
    [answer] = body["server_keys"]
    assert answer["server_name"] == get_server_name()
    assert client.get("/_matrix/key/v2/query/not%20a%20name").json() == {"server_keys": []}


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (b"{", "M_NOT_JSON"),
        (b"[]", "M_BAD_JSON"),
        (b'{"server_keys": []}', "M_BAD_JSON"),
        (b'{"server_keys": {"a.test": []}}', "M_BAD_JSON"),
        (b'{"server_keys": {"a.test": {"ed25519:x": {"minimum_valid_until_ts": "soon"}}}}', "M_BAD_JSON"),
    ],
)
def test_malformed_notary_queries_are_400(body: bytes, errcode: str) -> None:
    r = Client().post("/_matrix/key/v2/query", body, content_type="application/json")
    assert (r.status_code, r.json()["errcode"]) == (400, errcode)


def test_a_bad_minimum_valid_until_ts_parameter_is_400() -> None:
    r = Client().get("/_matrix/key/v2/query/a.test?minimum_valid_until_ts=soon")
    assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (
            {"listeners": [{"port": 8448, "tls": True, "resources": [{"names": ["federation"]}]}]},
            "tls_certificate_path",
        ),
        (
            {"listeners": [{"port": 8448, "tls": "yes", "resources": [{"names": ["federation"]}]}]},
            "listeners[0].tls",
        ),
        (
            {"trusted_key_servers": [{"server_name": "n.test", "verify_keys": {"rsa:1": "x"}}]},
            "trusted_key_servers[0]",
        ),
        (
            {"trusted_key_servers": [{"server_name": "n.test", "accept_keys_insecurely": True}]},
            "trusted_key_servers[0]",
        ),
        (
            {"old_signing_keys": {"ed25519:a": {"key": "short", "expired_ts": 1}}},
            "old_signing_keys.ed25519:a.key",
        ),
        ({"federation_custom_ca_list": "ca.pem"}, "federation_custom_ca_list"),
    ],
)
def test_bad_federation_options_are_refused_naming_the_key(raw: dict, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"server_name": "example.com", **raw}, env={})
    assert str(err.value).startswith(named)


def test_trusted_key_servers_default_to_none() -> None:
    config = build_config({"server_name": "example.com"}, env={})
    assert config.trusted_key_servers == []
    assert config.federation_verify_certificates is True

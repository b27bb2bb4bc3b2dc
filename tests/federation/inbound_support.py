"""Talking to this test process's Embassy as another server: keys known, requests signed."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client, RequestFactory

from dagcore.clock import now_ms
from dagcore.protocol import signing
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.request_auth import authorization_header
from dagcore.server_keys import get_server_name
from dagcore.store import server_keys as key_store
from embassy.http import raw_request_uri
from tests.support.events import RemoteServer


def trust(remote: RemoteServer) -> None:
    """Cache the remote server's key as if fetched from it (valid for a long while)."""
    key_id = signing.key_id(remote.key)
    verify = signing.encode_verify_key_base64(signing.get_verify_key(remote.key))
    key_store.store_server_keys(
        keys=[
            key_store.StoredServerKey(
                server_name=remote.server_name,
                key_id=key_id,
                verify_key=verify,
                valid_until_ts=now_ms() + 10**10,
                expired_ts=None,
                from_server=remote.server_name,
                fetched_ts=now_ms(),
                key_json=json.dumps({"server_name": remote.server_name}),
            )
        ]
    )


def signed_request(
    remote: RemoteServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    sign: bool = True,
) -> tuple[int, Any]:
    """``method path`` from ``remote``, signed over ``body``; returns (status, parsed JSON)."""
    headers: dict[str, Any] = {}
    if sign:
        headers["HTTP_AUTHORIZATION"] = authorization_header(
            method=method,
            # Signed as this test client's request will be seen (it decodes %24 and the like).
            uri=raw_request_uri(RequestFactory().generic(method, path)),
            origin=remote.server_name,
            destination=get_server_name(),
            signing_key=remote.key,
            content=body,
        )
    data = raw if raw is not None else (encode_canonical_json(body) if body is not None else b"")
    response = Client().generic(method, path, data, content_type="application/json", **headers)
    return response.status_code, json.loads(response.content) if response.content else None


def send_txn(remote: RemoteServer, txn_id: str, pdus: list[dict[str, Any]], **extra: Any) -> tuple[int, Any]:
    body = {"origin": remote.server_name, "origin_server_ts": now_ms(), "pdus": pdus, **extra}
    return signed_request(remote, "PUT", f"/_matrix/federation/v1/send/{txn_id}", body)

"""Shared-secret registration: the admin API behind Synapse's ``register_new_matrix_user``.

``GET /_synapse/admin/v1/register`` hands out a nonce; ``POST`` creates the account when
``mac`` is the HMAC-SHA1, keyed with ``registration_shared_secret``, of
``nonce NUL username NUL password NUL ("admin" | "notadmin")``. The protocol and path
are Synapse's, so its tool (and scripts written for it) work against Dagma; the API
is served by Politburo, the admin server bound to localhost.

Nonces live for a minute, are used once, and are kept in the process's memory (as
Synapse does): Politburo is a single process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from dagcore.actions import accounts as account_actions
from dagcore.http.errors import MatrixError
from dagcore.server_keys import get_server_name

NONCE_LIFETIME_S = 60.0
MAX_NONCES = 1_000

_nonces: dict[str, float] = {}
_lock = threading.Lock()


def _secret() -> str:
    secret = settings.DAGMA.registration_shared_secret
    if not secret:
        raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
    return str(secret)


def issue_nonce() -> str:
    _secret()
    now = time.monotonic()
    nonce = secrets.token_hex(32)
    with _lock:
        for old in [n for n, t in _nonces.items() if now - t > NONCE_LIFETIME_S]:
            del _nonces[old]
        if len(_nonces) >= MAX_NONCES:
            raise MatrixError(429, "M_LIMIT_EXCEEDED", "Too many registration nonces outstanding")
        _nonces[nonce] = now
    return nonce


def _take_nonce(nonce: object) -> None:
    with _lock:
        issued = _nonces.pop(nonce, None) if isinstance(nonce, str) else None
    if issued is None or time.monotonic() - issued > NONCE_LIFETIME_S:
        raise MatrixError(400, "M_UNKNOWN", "unrecognised nonce")


def expected_mac(secret: str, nonce: str, username: str, password: str, admin: bool) -> str:
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha1)
    mac.update(
        b"\x00".join(
            [nonce.encode(), username.encode(), password.encode(), b"admin" if admin else b"notadmin"]
        )
    )
    return mac.hexdigest()


def check_register_with_shared_secret(body: Mapping[str, Any]) -> dict[str, Any]:
    """Create the account the body describes, if its ``mac`` proves the secret; log it in."""
    secret = _secret()
    _take_nonce(body.get("nonce"))  # used up even when the rest is refused: no replays
    username, password, admin = body.get("username"), body.get("password"), body.get("admin", False)
    if not isinstance(username, str) or not isinstance(password, str):
        raise MatrixError(400, "M_INVALID_PARAM", "username and password must be strings")
    if not isinstance(admin, bool):
        raise MatrixError(400, "M_INVALID_PARAM", "admin must be a boolean")
    if body.get("user_type") is not None:
        raise MatrixError(400, "M_INVALID_PARAM", "user_type is not supported")
    displayname = body.get("displayname")
    if displayname is not None and not isinstance(displayname, str):
        raise MatrixError(400, "M_INVALID_PARAM", "displayname must be a string")
    mac = body.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(
        mac.lower(), expected_mac(secret, str(body["nonce"]), username, password, admin)
    ):
        raise MatrixError(403, "M_FORBIDDEN", "HMAC incorrect")
    localpart = username  # as in Synapse: the localpart (a full user ID fails the grammar check)
    account_actions.check_new_localpart(localpart)
    account_actions.check_new_password(password)
    user = account_actions.do_register_user(
        localpart=localpart, password=password, is_admin=admin, displayname=displayname or None
    )
    session = account_actions.do_start_login_session(
        user=user, device_id=None, initial_display_name=None, want_refresh_token=False
    )
    return {
        "user_id": session.user_id,
        "access_token": session.access_token,
        "device_id": session.device_id,
        "home_server": get_server_name(),
    }

"""This server's identity: its name and Ed25519 signing keys (loaded once per process)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from django.conf import settings

from dagcore.protocol import signing
from dagcore.protocol.signing import VerifyKey


@functools.cache
def get_signing_keys() -> list[Any]:
    """All signing keys in the key file; the first one signs new events and responses."""
    path = Path(settings.DAGMA.signing_key_path)
    if not path.exists():
        raise RuntimeError(
            f"signing key file {path} does not exist; create it with `manage.py generate_config` "
            "or `manage.py generate_signing_key`"
        )
    keys = signing.read_signing_keys(path.read_text())
    if not keys:
        raise RuntimeError(f"signing key file {path} holds no key")
    return keys


def get_signing_key() -> Any:
    return get_signing_keys()[0]


def get_server_name() -> str:
    return str(settings.SERVER_NAME)


#: How long other servers may cache our keys (spec: ``valid_until_ts``; Synapse uses a day).
KEY_VALIDITY_MS = 24 * 3600 * 1000


@functools.cache
def get_old_verify_keys() -> dict[str, tuple[VerifyKey, int]]:
    """Keys this server signed with before a rotation: ``key_id -> (verify key, expired_ts)``.

    From ``old_signing_keys`` (Synapse's option and shape). Other servers still need
    them to check the signatures of our older events (spec: ``old_verify_keys``).
    """
    out: dict[str, tuple[VerifyKey, int]] = {}
    for kid, entry in (settings.DAGMA.old_signing_keys or {}).items():
        out[kid] = (signing.decode_verify_key_base64(kid, entry["key"]), int(entry["expired_ts"]))
    return out


def build_server_key_response(*, now_ms: int) -> dict[str, Any]:
    """Our signed ``GET /_matrix/key/v2/server`` answer (spec: "Publishing Keys")."""
    keys = get_signing_keys()
    current = {signing.key_id(k): {"key": signing.encode_verify_key_base64(k)} for k in keys}
    body = {
        "server_name": get_server_name(),
        "valid_until_ts": now_ms + KEY_VALIDITY_MS,
        "verify_keys": current,
        "old_verify_keys": {
            kid: {"key": signing.encode_verify_key_base64(key), "expired_ts": expired_ts}
            for kid, (key, expired_ts) in get_old_verify_keys().items()
            if kid not in current
        },
    }
    signed = body
    for key in keys:  # every current key signs, so a server knowing any of them can check it
        signed = signing.sign_json(signed, server_name=get_server_name(), signing_key=key)
    return signed

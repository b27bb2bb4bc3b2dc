"""This server's identity: its name and Ed25519 signing keys.

The keys live in the database (``server_signing_keys``), shared by every process, so a
rotation (``manage.py signing_key rotate``) reaches Tribune, Embassy, the workers and
Politburo without a restart: each process re-reads the table at most every
:data:`KEY_REFRESH_S` seconds. On first use the table is seeded from the configured key file
(``signing_key_path``, Synapse's format), so an existing deployment keeps its identity.

A rotated key stays published under ``old_verify_keys`` with its ``expired_ts`` (spec:
server-server API "Publishing Keys"); rooms v5+ refuse what it signed later (spec: rooms v5
"Signing key validity period"). Keys under ``old_signing_keys`` in the config (Synapse's
option) are published too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from dagcore.clock import now_ms as _now_ms
from dagcore.protocol import signing
from dagcore.protocol.signing import SigningKey, VerifyKey
from dagcore.store import server_keys as key_store

#: How stale a process's copy of our keys may be: a rotation is picked up by every process
#: within this time. A normal rotation keeps the old key valid a little longer
#: (``dagcore.actions.signing_keys.ROTATION_OVERLAP_MS``) so events signed meanwhile stay valid.
KEY_REFRESH_S = 2.0


@dataclass(frozen=True)
class OurKeys:
    """Our keys as one process sees them: ``signing`` (current; the first one signs new events
    and requests) and ``old`` (``key_id -> (verify key, expired_ts)``)."""

    signing: tuple[SigningKey, ...]
    old: dict[str, tuple[VerifyKey, int]]


_lock = threading.Lock()
_loaded: tuple[float, OurKeys] | None = None
#: Where a caller on an event loop reads the table (the ORM refuses to run on the loop's thread).
_reader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="server-keys")


def read_key_file(path: Path | None = None) -> list[SigningKey]:
    """The keys of a signing key file (the configured one by default)."""
    path = path or Path(settings.DAGMA.signing_key_path)
    if not path.exists():
        raise RuntimeError(
            f"signing key file {path} does not exist; create it with `manage.py generate_config` "
            "or `manage.py signing_key import`"
        )
    keys = signing.read_signing_keys(path.read_text())
    if not keys:
        raise RuntimeError(f"signing key file {path} holds no key")
    return keys


def _read_database() -> OurKeys:
    rows = key_store.list_own_keys()
    if not any(r.expired_ts is None for r in rows):
        seeded = [
            key_store.OwnKey(
                key_id=signing.key_id(k),
                verify_key=signing.encode_verify_key_base64(k),
                seed=encode_seed(k),
                created_ts=_now_ms(),
                expired_ts=None,
                origin="file",
            )
            for k in read_key_file()
        ]
        key_store.insert_own_keys_if_none(seeded)
        rows = key_store.list_own_keys()
    current = tuple(
        signing.decode_signing_key_base64(r.key_id, r.seed)
        for r in rows
        if r.expired_ts is None and r.seed is not None
    )
    if not current:
        raise RuntimeError(
            "no current signing key in server_signing_keys: run `manage.py signing_key rotate`"
        )
    old = {
        r.key_id: (signing.decode_verify_key_base64(r.key_id, r.verify_key), r.expired_ts)
        for r in rows
        if r.expired_ts is not None
    }
    return OurKeys(signing=current, old=old)


def _read_database_then_close() -> OurKeys:
    """On the reader thread: give the connection back (to the pool) after each read."""
    try:
        return _read_database()
    finally:
        key_store.release_connection()


def get_our_keys() -> OurKeys:
    """Our keys, re-read from the database when this process's copy is older than
    :data:`KEY_REFRESH_S`."""
    global _loaded
    loaded = _loaded
    if loaded is not None and time.monotonic() - loaded[0] < KEY_REFRESH_S:
        return loaded[1]
    with _lock:
        if _loaded is not None and time.monotonic() - _loaded[0] < KEY_REFRESH_S:
            return _loaded[1]
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            keys = _read_database()
        else:  # called on an event loop: one short read on the reader thread
            keys = _reader.submit(_read_database_then_close).result()
        _loaded = (time.monotonic(), keys)
        return keys


def forget_cached_keys() -> None:
    """Make the next call re-read the table (after a rotation in this process, and in tests)."""
    global _loaded
    with _lock:
        _loaded = None


def encode_seed(key: SigningKey) -> str:
    """Unpadded Base64 of a signing key's 32-byte seed (the signing key file's third field)."""
    return signing.write_signing_keys([key]).split()[2]


def get_signing_keys() -> list[SigningKey]:
    """Our current keys; the first one signs new events and responses."""
    return list(get_our_keys().signing)


def get_signing_key() -> SigningKey:
    return get_our_keys().signing[0]


def get_server_name() -> str:
    return str(settings.SERVER_NAME)


#: How long other servers may cache our keys (spec: ``valid_until_ts``; Synapse uses a day).
KEY_VALIDITY_MS = 24 * 3600 * 1000


@functools.cache
def get_old_verify_keys() -> dict[str, tuple[VerifyKey, int]]:
    """Keys this server signed with before a rotation, from ``old_signing_keys`` in the config
    (Synapse's option and shape): ``key_id -> (verify key, expired_ts)``."""
    out: dict[str, tuple[VerifyKey, int]] = {}
    for kid, entry in (settings.DAGMA.old_signing_keys or {}).items():
        out[kid] = (signing.decode_verify_key_base64(kid, entry["key"]), int(entry["expired_ts"]))
    return out


def get_all_old_verify_keys() -> dict[str, tuple[VerifyKey, int]]:
    """Every old key we publish: the database's (rotations, imports, lost keys) and the config's."""
    return {**get_old_verify_keys(), **get_our_keys().old}


def build_server_key_response(*, now_ms: int) -> dict[str, Any]:
    """Our signed ``GET /_matrix/key/v2/server`` answer (spec: "Publishing Keys")."""
    ours = get_our_keys()
    keys = ours.signing
    current = {signing.key_id(k): {"key": signing.encode_verify_key_base64(k)} for k in keys}
    body = {
        "server_name": get_server_name(),
        "valid_until_ts": now_ms + KEY_VALIDITY_MS,
        "verify_keys": current,
        "old_verify_keys": {
            kid: {"key": signing.encode_verify_key_base64(key), "expired_ts": expired_ts}
            for kid, (key, expired_ts) in {**get_old_verify_keys(), **ours.old}.items()
            if kid not in current
        },
    }
    signed = body
    for key in keys:  # every current key signs, so a server knowing any of them can check it
        signed = signing.sign_json(signed, server_name=get_server_name(), signing_key=key)
    return signed

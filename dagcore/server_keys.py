"""This server's identity: its name and Ed25519 signing keys (loaded once per process)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from django.conf import settings

from dagcore.protocol import signing


@functools.cache
def get_signing_keys() -> list[Any]:
    """All signing keys in the key file; the first one signs new events and responses."""
    path = Path(settings.DAGMA["signing_key_path"])
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

"""Media IDs and ``mxc://`` URIs.

Spec: https://spec.matrix.org/v1.19/client-server-api/#matrix-content-mxc-uris —
``mxc://<server-name>/<media-id>``, where the media ID is "an opaque identifier
[that] MUST only contain the characters A-Z, a-z, 0-9, _ and -". Checking the
grammar here, before anything else, is what keeps a media ID (or a server name)
from ever reaching the filesystem: the store names files by content hash only.
"""

from __future__ import annotations

import re
import secrets
import string

from dagcore.protocol.identifiers import is_valid_server_name

#: Explicit ASCII classes (``\w`` would also match non-ASCII letters).
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_ALPHABET = string.ascii_letters + string.digits
#: 24 characters of [A-Za-z0-9]: ~143 bits, unguessable (authenticated media is not a capability,
#: but legacy unauthenticated downloads are, so IDs must not be enumerable).
NEW_MEDIA_ID_LENGTH = 24


def is_valid_media_id(value: object) -> bool:
    return isinstance(value, str) and _MEDIA_ID.fullmatch(value) is not None


def new_media_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(NEW_MEDIA_ID_LENGTH))


def mxc_uri(*, server_name: str, media_id: str) -> str:
    return f"mxc://{server_name}/{media_id}"


def parse_mxc_uri(uri: object) -> tuple[str, str] | None:
    """``(server_name, media_id)`` of a well-formed ``mxc://`` URI, else ``None``."""
    if not isinstance(uri, str) or not uri.startswith("mxc://"):
        return None
    server_name, sep, media_id = uri[len("mxc://") :].partition("/")
    if not sep or not is_valid_server_name(server_name) or not is_valid_media_id(media_id):
        return None
    return server_name, media_id

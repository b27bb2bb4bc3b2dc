"""Server ACLs: whether ``m.room.server_acl`` lets a server take part in a room.

Spec: client-server API ``m.room.server_acl`` and server-server API "Server Access
Control Lists (ACLs)". The ``allow`` / ``deny`` lists are case-insensitive glob
expressions (appendices "Glob-style matching": ``*`` any run of characters, ``?``
exactly one) matched against the server name *without its port*, in this order:

1. no ``m.room.server_acl`` in the room's state: allow;
2. an IP literal (v4, or v6 in brackets) while ``allow_ip_literals`` is ``false``: deny;
3. a match in ``deny``: deny;
4. a match in ``allow``: allow;
5. otherwise deny.

Malformed content is read as Synapse reads it: a non-list ``allow``/``deny`` is the
empty list, non-string entries are ignored, a non-boolean ``allow_ip_literals`` is
``true`` (the spec: "Defaults to true if missing or otherwise not a boolean").
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from typing import Any


def strip_port(server_name: str) -> str:
    """The host part of a server name: ``evil.com:8448`` -> ``evil.com``, ``[::1]:8448`` -> ``[::1]``."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[: end + 1] if end != -1 else server_name
    host, sep, port = server_name.rpartition(":")
    return host if sep and port.isdigit() else server_name


def is_ip_literal(host: str) -> bool:
    """Whether a host (port already stripped) is an IPv4 literal or a bracketed IPv6 literal."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def glob_matches(pattern: str, value: str) -> bool:
    """Spec "Glob-style matching", case-insensitively (as the ACL fields are defined)."""
    return _glob(pattern).fullmatch(value) is not None


def _patterns(value: Any) -> list[str]:
    return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []


def server_acl_allows(acl: Mapping[str, Any] | None, server_name: str) -> bool:
    """Whether ``server_name`` may take part in a room whose ACL content is ``acl`` (None: no ACL)."""
    if acl is None:
        return True
    host = strip_port(server_name)
    allow_ip_literals = acl.get("allow_ip_literals", True)
    if allow_ip_literals is False and is_ip_literal(host):
        return False
    if any(glob_matches(p, host) for p in _patterns(acl.get("deny"))):
        return False
    return any(glob_matches(p, host) for p in _patterns(acl.get("allow")))

"""Small identifier helpers the auth rules need (user IDs, server names, domains).

Spec: https://spec.matrix.org/v1.19/appendices/#user-identifiers and
https://spec.matrix.org/v1.19/appendices/#server-name. The check is the *historical*
user ID grammar (any printable ASCII except ``:`` in the localpart), because the auth
rules must accept every user ID that other servers accepted when the room was young.
"""

from __future__ import annotations

import ipaddress
import re

_HOSTNAME = re.compile(r"[A-Za-z0-9.\-]{1,255}", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)


def is_valid_server_name(name: str) -> bool:
    host, port = name, None
    if host.startswith("["):
        end = host.find("]")
        if end == -1:
            return False
        literal, rest = host[1:end], host[end + 1 :]
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
        if rest:
            if not rest.startswith(":"):
                return False
            port = rest[1:]
    else:
        if ":" in host:
            host, port = host.split(":", 1)
        if not _HOSTNAME.fullmatch(host):
            return False
    return port is None or bool(_PORT.fullmatch(port))


def is_valid_user_id(value: object) -> bool:
    """``@localpart:server_name``, at most 255 bytes, localpart of printable ASCII but ``:``."""
    if not isinstance(value, str) or not value.startswith("@") or ":" not in value:
        return False
    if len(value.encode("utf-8")) > 255:
        return False
    localpart, server_name = value[1:].split(":", 1)
    if not localpart or any(not ("\x21" <= ch <= "\x7e") for ch in localpart):
        return False
    return is_valid_server_name(server_name)


def domain_of(identifier: str) -> str | None:
    """The server part of a ``@user:server`` / ``!room:server`` / ``$event:server`` ID."""
    if ":" not in identifier:
        return None
    return identifier.split(":", 1)[1]

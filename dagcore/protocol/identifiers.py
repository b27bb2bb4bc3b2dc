"""Grammar checks for Matrix identifiers.

Spec: https://spec.matrix.org/v1.19/appendices/#identifier-grammar -- server
names, user IDs (strict and historical), room IDs (with and without a domain,
room version 12), event IDs per room version, room aliases. Every identifier
is limited to 255 bytes of UTF-8 including its sigil.

These are pure predicates: they never raise for odd input types, so views and
the federation pipeline can call them on anything that came out of JSON.
"""

from __future__ import annotations

import ipaddress
import re

from dagcore.protocol.room_versions import EventFormat, RoomVersion

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "is_valid_event_id",
    "is_valid_new_localpart",
    "is_valid_room_alias",
    "is_valid_room_id",
    "is_valid_server_name",
    "is_valid_user_id",
    "parse_user_id",
    "split_server_name",
]

#: "The length of a user ID, including the @ sigil and the domain, MUST NOT exceed 255 bytes."
#: The same limit applies to room IDs, room aliases and event IDs.
MAX_IDENTIFIER_BYTES = 255

# Explicit ASCII classes: Python's \d and \w also match non-ASCII digits/letters.
_PORT = re.compile(r"[0-9]{1,5}")
_IPV4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_DNS_NAME = re.compile(r"[0-9A-Za-z.-]{1,255}")
# Current user ID localparts (spec v1.8+): a-z, 0-9, and . _ = - / +
_STRICT_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")
# v3 event IDs: standard unpadded base64 of a 32-byte hash is 43 characters;
# v4+ event IDs and v12 room IDs use the URL-safe alphabet. The last character's
# unused low bits are not checked: other servers do not, and refusing what they
# accept would split our view of a room from theirs.
_HASH_B64 = re.compile(r"[A-Za-z0-9+/]{43}")
_HASH_B64_URLSAFE = re.compile(r"[A-Za-z0-9_-]{43}")


def _byte_length(s: str) -> int | None:
    """UTF-8 length of ``s``, or ``None`` if it holds lone surrogates (not valid UTF-8)."""
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _within_limit(s: str) -> bool:
    length = _byte_length(s)
    return length is not None and length <= MAX_IDENTIFIER_BYTES


def split_server_name(server_name: str) -> tuple[str, int | None] | None:
    """Split a valid server name into ``(host, port)``; ``None`` if it is invalid.

    The host of an IPv6 literal keeps its brackets.
    """
    if not isinstance(server_name, str) or not server_name or len(server_name) > MAX_IDENTIFIER_BYTES:
        return None
    if server_name.startswith("["):
        end = server_name.find("]")
        if end < 0:
            return None
        host, rest = server_name[: end + 1], server_name[end + 1 :]
        address = host[1:-1]
        if not _IPV6_CHARS.fullmatch(address):
            return None
        try:
            # "IPv6 literals must be as specified by RFC3513, section 2.2."
            ipaddress.IPv6Address(address)
        except ValueError:
            return None
    else:
        host, sep, port_text = server_name.rpartition(":")
        if not sep:
            host, rest = server_name, ""
        else:
            rest = ":" + port_text
        if _IPV4.fullmatch(host):
            # A dotted quad also matches the dns-name rule; the spec says IPv4
            # literals are four numbers 0-255, so "1.2.3.256" is refused.
            if any(int(part) > 255 for part in host.split(".")):
                return None
        elif not _DNS_NAME.fullmatch(host):
            return None
    if not rest:
        return host, None
    if not rest.startswith(":") or not _PORT.fullmatch(rest[1:]):
        return None
    # The grammar is "port = 1*5DIGIT"; we keep to the grammar rather than also
    # enforcing <= 65535, so what we accept is exactly what the spec accepts.
    return host, int(rest[1:])


def is_valid_server_name(server_name: object) -> bool:
    """hostname / IPv4 / [IPv6] with an optional port, at most 255 characters.

    Spec: https://spec.matrix.org/v1.19/appendices/#server-name. Server names
    are case-sensitive and are not lower-cased here.
    """
    return isinstance(server_name, str) and split_server_name(server_name) is not None


def _is_historical_localpart(localpart: str) -> bool:
    # "any legal non-surrogate Unicode code points except for : and NUL,
    # including other control characters and the empty string".
    return ":" not in localpart and "\x00" not in localpart and _byte_length(localpart) is not None


def parse_user_id(user_id: object) -> tuple[str, str]:
    """Split ``@localpart:server`` into ``(localpart, server)``, or raise ``ValueError``.

    Accepts historical localparts (any non-surrogate code point except ``:`` and
    NUL, even empty), which servers MUST accept in events. The localpart cannot
    contain ``:``, so the first colon is the separator (the server name may
    contain more, for its port or an IPv6 literal).
    """
    if not isinstance(user_id, str) or not user_id.startswith("@"):
        raise ValueError("User ID must start with @")
    if not _within_limit(user_id):
        raise ValueError("User ID is longer than 255 bytes or not valid UTF-8")
    localpart, sep, server = user_id[1:].partition(":")
    if not sep:
        raise ValueError("User ID has no server name")
    if not _is_historical_localpart(localpart):
        raise ValueError("User ID localpart contains a forbidden character")
    if not is_valid_server_name(server):
        raise ValueError("User ID server name is invalid")
    return localpart, server


def is_valid_user_id(user_id: object, *, historical: bool = True) -> bool:
    """Whether ``user_id`` is a user ID.

    Spec: https://spec.matrix.org/v1.19/appendices/#user-identifiers.
    ``historical=True`` (events, federation) accepts the historical character
    set; ``historical=False`` requires a non-empty localpart of ``a-z 0-9 . _ = - / +``.
    """
    try:
        localpart, _server = parse_user_id(user_id)
    except ValueError:
        return False
    return historical or bool(_STRICT_LOCALPART.fullmatch(localpart))


def is_valid_new_localpart(localpart: object, *, server_name: str | None = None) -> bool:
    """Whether ``localpart`` may be used for a *new* account.

    Only ``a-z 0-9 . _ = - / +``. Nothing is lower-cased: a caller wanting
    case-insensitive registration maps the name first (appendices, "Mapping
    from other character sets") and then asks. With ``server_name``, also
    checks that the full user ID fits in 255 bytes.
    """
    if not isinstance(localpart, str) or not _STRICT_LOCALPART.fullmatch(localpart):
        return False
    if server_name is not None:
        return len(localpart) + len(server_name) + 2 <= MAX_IDENTIFIER_BYTES and is_valid_server_name(
            server_name
        )
    return True


def is_valid_room_id(room_id: object, room_version: RoomVersion | None = None) -> bool:
    """Whether ``room_id`` is a room ID (for ``room_version``, or in any version if ``None``).

    Spec: https://spec.matrix.org/v1.19/appendices/#room-ids. v1-v11:
    ``!opaque_id:domain`` (opaque part: non-surrogate code points except ``:``
    and NUL). v12: ``!`` + the create event's reference hash in URL-safe
    unpadded Base64 (43 characters).
    """
    if not isinstance(room_id, str) or not room_id.startswith("!") or not _within_limit(room_id):
        return False
    hashed = bool(_HASH_B64_URLSAFE.fullmatch(room_id[1:]))
    if room_version is not None and room_version.room_id_is_create_event_hash:
        return hashed
    opaque, sep, server = room_id[1:].partition(":")
    with_domain = bool(sep) and "\x00" not in opaque and is_valid_server_name(server)
    if room_version is None:
        return with_domain or hashed
    return with_domain


def is_valid_event_id(event_id: object, room_version: RoomVersion | None = None) -> bool:
    """Whether ``event_id`` is an event ID (for ``room_version``, or in any version if ``None``).

    Spec: https://spec.matrix.org/v1.19/appendices/#event-ids and the room
    versions: v1/v2 ``$opaque_id:domain``; v3 ``$`` + 43 characters of standard
    unpadded Base64; v4+ ``$`` + 43 characters of URL-safe unpadded Base64.
    Without a room version: ``$`` + at least one character, no NUL, at most
    255 bytes.
    """
    if not isinstance(event_id, str) or not event_id.startswith("$") or not _within_limit(event_id):
        return False
    rest = event_id[1:]
    if room_version is None:
        return bool(rest) and "\x00" not in rest
    if room_version.event_format is EventFormat.V1:
        opaque, sep, server = rest.partition(":")
        return bool(sep) and "\x00" not in opaque and is_valid_server_name(server)
    if room_version.event_format is EventFormat.V2:
        return bool(_HASH_B64.fullmatch(rest))
    return bool(_HASH_B64_URLSAFE.fullmatch(rest))


def is_valid_room_alias(alias: object) -> bool:
    """Whether ``alias`` is ``#localpart:server`` within 255 bytes.

    Spec: https://spec.matrix.org/v1.19/appendices/#room-aliases -- the
    localpart may hold any non-surrogate code point except ``:`` and NUL.
    """
    if not isinstance(alias, str) or not alias.startswith("#") or not _within_limit(alias):
        return False
    localpart, sep, server = alias[1:].partition(":")
    return bool(sep) and "\x00" not in localpart and is_valid_server_name(server)

"""Request authentication between servers: the ``Authorization: X-Matrix`` header.

Spec: https://spec.matrix.org/v1.19/server-server-api/#request-authentication

Every federation request is signed by the sending server. The signature covers a
JSON object built from the request::

    {"method": "PUT", "uri": "/_matrix/federation/v1/send/1234",
     "origin": "origin.example", "destination": "dest.example", "content": {...}}

(``content`` only when the request has a body; ``uri`` is the path and query
exactly as sent, percent-encoding included). The signature travels in one
``Authorization`` header per signing key::

    Authorization: X-Matrix origin="origin.example",destination="dest.example",key="ed25519:a_X",sig="..."

The header follows RFC 9110's auth-param grammar (names case-insensitive, values
a token or a quoted string with backslash escapes). For older servers the
recipient accepts unquoted values containing colons (``origin=example.com:8448``)
and a missing ``destination``; a ``destination`` that is present but is not our
name is refused with 401 (spec: "the receiving server must deny the request").

Pure functions: the caller supplies the raw header values, the parsed body and a
key lookup (:data:`dagcore.protocol.signing.VerifyKeyLookup`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dagcore.protocol.identifiers import is_valid_server_name
from dagcore.protocol.signing import (
    SignatureError,
    SigningKey,
    VerifyKeyLookup,
    key_id,
    sign_json,
    verify_json_signature,
)

__all__ = [
    "MAX_AUTHORIZATION_HEADERS",
    "MAX_HEADER_BYTES",
    "RequestAuthError",
    "XMatrixAuth",
    "authorization_header",
    "parse_x_matrix",
    "request_json",
    "verify_request",
]

#: A header longer than this is refused before parsing (one signature is ~120
#: bytes of parameters plus the server names, each at most 255 bytes).
MAX_HEADER_BYTES = 2048
#: One header per signing key; a server has a handful of keys at most.
MAX_AUTHORIZATION_HEADERS = 8

_SCHEME = "x-matrix"
# RFC 9110 section 5.6.2 token characters.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# An unquoted value: a token, plus ':' which older servers leave unquoted
# (``origin=example.com:8448``) and the spec asks recipients to accept.
_UNQUOTED_VALUE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z:-]+")
_KEY_ID = re.compile(r"[a-z0-9_]+:[a-zA-Z0-9_]+")


class RequestAuthError(Exception):
    """The request is not authenticated: answer 401 with ``errcode`` (``M_UNAUTHORIZED``)."""

    errcode = "M_UNAUTHORIZED"
    http_status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class XMatrixAuth:
    """One parsed ``X-Matrix`` credential."""

    origin: str
    #: ``None`` when an older sender left it out.
    destination: str | None
    key_id: str
    signature: str


def _skip_ows(text: str, i: int) -> int:
    """The index of the first character at or after ``i`` that is not optional whitespace."""
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _quoted_string(text: str, start: int) -> tuple[str, int]:
    """Parse the quoted string whose opening quote is at ``start``; return (value, index after it)."""
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(chars), i + 1
        if c == "\\":
            i += 1
            if i >= len(text):
                break
            c = text[i]
        if (c < " " and c != "\t") or c == "\x7f":
            raise RequestAuthError("Control character in an X-Matrix parameter")
        chars.append(c)
        i += 1
    raise RequestAuthError("Unterminated quoted string in the X-Matrix header")


def parse_x_matrix(header: str) -> XMatrixAuth:
    """Parse one ``Authorization`` header value of scheme ``X-Matrix``; raise :class:`RequestAuthError`."""
    if not isinstance(header, str):
        raise RequestAuthError("Authorization header is not text")
    if len(header.encode("utf-8", "surrogatepass")) > MAX_HEADER_BYTES:
        raise RequestAuthError(f"Authorization header is longer than {MAX_HEADER_BYTES} bytes")
    scheme, sep, rest = header.partition(" ")
    # RFC 9110 section 11.1: the scheme is case-insensitive.
    if scheme.lower() != _SCHEME or not sep:
        raise RequestAuthError("Authorization header is not of scheme X-Matrix")
    params: dict[str, str] = {}
    i = _skip_ows(rest, 0)
    while i < len(rest):
        name_match = _TOKEN.match(rest, i)
        if name_match is None:
            raise RequestAuthError(f"Malformed X-Matrix header at character {i + len(scheme) + 1}")
        name = name_match.group().lower()
        i = _skip_ows(rest, name_match.end())
        if i >= len(rest) or rest[i] != "=":
            raise RequestAuthError(f"X-Matrix parameter {name!r} has no value")
        i = _skip_ows(rest, i + 1)
        if i < len(rest) and rest[i] == '"':
            value, i = _quoted_string(rest, i)
        else:
            value_match = _UNQUOTED_VALUE.match(rest, i)
            if value_match is None:
                raise RequestAuthError(f"X-Matrix parameter {name!r} has a malformed value")
            value, i = value_match.group(), value_match.end()
        if name in params:
            raise RequestAuthError(f"X-Matrix parameter {name!r} given twice")
        params[name] = value
        i = _skip_ows(rest, i)
        if i < len(rest):
            if rest[i] != ",":
                raise RequestAuthError(f"Malformed X-Matrix header at character {i + len(scheme) + 1}")
            i = _skip_ows(rest, i + 1)
    # Unknown parameters are ignored (forward compatibility); these are required.
    missing = [name for name in ("origin", "key", "sig") if not params.get(name)]
    if missing:
        raise RequestAuthError(f"X-Matrix header lacks {', '.join(missing)}")
    origin, destination = params["origin"], params.get("destination")
    if not is_valid_server_name(origin):
        raise RequestAuthError("X-Matrix origin is not a valid server name")
    if destination is not None and not is_valid_server_name(destination):
        raise RequestAuthError("X-Matrix destination is not a valid server name")
    if not _KEY_ID.fullmatch(params["key"]):
        raise RequestAuthError("X-Matrix key is not a key ID ('algorithm:version')")
    return XMatrixAuth(origin=origin, destination=destination, key_id=params["key"], signature=params["sig"])


def request_json(
    *, method: str, uri: str, origin: str, destination: str, content: Any = None
) -> dict[str, Any]:
    """The object a request's signature covers (``content`` left out when ``None``: no body)."""
    obj: dict[str, Any] = {"method": method.upper(), "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        obj["content"] = content
    return obj


def authorization_header(
    *,
    method: str,
    uri: str,
    origin: str,
    destination: str,
    signing_key: SigningKey,
    content: Any = None,
) -> str:
    """The ``Authorization`` header value for an outgoing request signed with ``signing_key``.

    Written as the spec asks senders to for older recipients: one space after
    ``X-Matrix``, lower-case names, quoted values without backslashes (server
    names, key IDs and unpadded Base64 never contain ``"`` or ``\\``).
    """
    signed = sign_json(
        request_json(method=method, uri=uri, origin=origin, destination=destination, content=content),
        server_name=origin,
        signing_key=signing_key,
    )
    kid = key_id(signing_key)
    sig = signed["signatures"][origin][kid]
    return f'X-Matrix origin="{origin}",destination="{destination}",key="{kid}",sig="{sig}"'


def verify_request(
    *,
    method: str,
    uri: str,
    content: Any,
    authorization: Iterable[str],
    our_server_name: str,
    get_verify_key: VerifyKeyLookup,
    now_ms: int,
) -> str:
    """Authenticate a federation request; return the origin server name, or raise :class:`RequestAuthError`.

    ``authorization`` holds every ``Authorization`` header value of the request;
    ``content`` is the parsed JSON body (``None`` for none). Every ``X-Matrix``
    credential must name the same origin, and any ``destination`` must be us; the
    request is authentic when one of the signatures verifies with the origin's
    key, looked up as valid at ``now_ms`` (a request is signed now, unlike an
    event, whose keys are checked at its ``origin_server_ts``).
    """
    values = list(authorization)
    if len(values) > MAX_AUTHORIZATION_HEADERS:
        raise RequestAuthError(f"More than {MAX_AUTHORIZATION_HEADERS} Authorization headers")
    credentials = [parse_x_matrix(v) for v in values if isinstance(v, str) and v[:9].lower() == "x-matrix "]
    if not credentials:
        raise RequestAuthError("Missing X-Matrix Authorization header")
    origin = credentials[0].origin
    if any(c.origin != origin for c in credentials):
        raise RequestAuthError("X-Matrix headers name different origins")
    if any(c.destination is not None and c.destination != our_server_name for c in credentials):
        raise RequestAuthError(f"Request is not addressed to {our_server_name}")
    # A missing destination means an older sender, which signed with ours as destination.
    signed = request_json(method=method, uri=uri, origin=origin, destination=our_server_name, content=content)
    failures: list[str] = []
    for credential in credentials:
        verify_key = get_verify_key(origin, credential.key_id, now_ms)
        if verify_key is None:
            failures.append(f"no key {credential.key_id} for {origin}")
            continue
        signed["signatures"] = {origin: {credential.key_id: credential.signature}}
        try:
            verify_json_signature(signed, server_name=origin, key_id=credential.key_id, verify_key=verify_key)
        except SignatureError as exc:
            failures.append(str(exc))
            continue
        return origin
    raise RequestAuthError(f"Request signature check failed: {'; '.join(failures)}")

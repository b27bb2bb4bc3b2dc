"""``multipart/mixed`` answers of the federation media endpoints, built and read.

Spec: server-server API "Content Repository"
(https://spec.matrix.org/v1.19/server-server-api/#content-repository): the answer "MUST
contain a ``boundary`` (per RFC 2046) delineating exactly two parts": first a JSON object
(``application/json``, metadata, "currently always an empty object"), then either the
media's bytes with their ``Content-Type`` and ``Content-Disposition`` headers, or a
``Location`` header naming where to fetch them.

Pure functions over bytes: no Django, no network.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

#: RFC 2046 §5.1.1: 1 to 70 characters from this set (not ending in a space).
_BOUNDARY_RE = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
#: Headers of one part, at most (the media's own headers are short).
MAX_PART_HEADER_BYTES = 16 * 1024


class MultipartError(ValueError):
    """The answer is not the two-part ``multipart/mixed`` the spec describes."""


@dataclass(frozen=True)
class MediaPart:
    """The second part: the bytes (``content``) or where to fetch them (``location``)."""

    metadata: dict[str, object]
    headers: dict[str, str]
    content: bytes | None
    location: str | None


def new_boundary() -> str:
    return secrets.token_hex(16)


def build_media_answer(
    *, boundary: str, content_type: str, content_disposition: str, content: bytes
) -> bytes:
    """The whole body of a download/thumbnail answer (``Content-Type: multipart/mixed; boundary=...``)."""
    delimiter = b"--" + boundary.encode("ascii")
    return b"".join(
        (
            delimiter,
            b"\r\nContent-Type: application/json\r\n\r\n{}\r\n",
            delimiter,
            b"\r\nContent-Type: ",
            content_type.encode("latin-1"),
            b"\r\nContent-Disposition: ",
            content_disposition.encode("latin-1"),
            b"\r\n\r\n",
            content,
            b"\r\n",
            delimiter,
            b"--\r\n",
        )
    )


def boundary_of(content_type: str | None) -> str:
    """The ``boundary`` parameter of a ``multipart/mixed`` content type."""
    if not content_type:
        raise MultipartError("the answer has no Content-Type")
    essence, _, params = content_type.partition(";")
    if essence.strip().lower() != "multipart/mixed":
        raise MultipartError(f"the answer is {essence.strip()[:100]!r}, not multipart/mixed")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if not _BOUNDARY_RE.match(value):
                raise MultipartError("the multipart boundary is not valid (RFC 2046)")
            return value
    raise MultipartError("the multipart answer has no boundary")


def _split_part(part: bytes) -> tuple[dict[str, str], bytes]:
    end = part.find(b"\r\n\r\n")
    if part.startswith(b"\r\n"):  # a part without headers
        return {}, part[2:]
    if end < 0 or end > MAX_PART_HEADER_BYTES:
        raise MultipartError("a part's headers do not end")
    headers: dict[str, str] = {}
    for line in part[:end].split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            raise MultipartError("a part has a malformed header line")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers, part[end + 4 :]


def parse_media_answer(body: bytes, content_type: str | None) -> MediaPart:
    """The metadata and media part of a federation media answer, else :class:`MultipartError`."""
    delimiter = b"--" + boundary_of(content_type).encode("ascii")
    # The first delimiter may follow a preamble; later ones follow a CRLF (RFC 2046 §5.1.1).
    if body.startswith(delimiter):
        start = len(delimiter)
    else:
        first = body.find(b"\r\n" + delimiter)
        if first < 0:
            raise MultipartError("the answer has no multipart delimiter")
        start = first + 2 + len(delimiter)
    close = body.rfind(b"\r\n" + delimiter + b"--")
    if close < start:
        raise MultipartError("the multipart answer is not closed")
    parts = body[start:close].split(b"\r\n" + delimiter)
    if len(parts) != 2:
        raise MultipartError(f"the answer has {len(parts)} parts, not 2")
    # Each part begins after the delimiter line (transport padding, then CRLF).
    cleaned = []
    for raw in parts:
        line_end = raw.find(b"\r\n")
        if line_end < 0 or raw[:line_end].strip(b" \t"):
            raise MultipartError("a multipart delimiter line is malformed")
        cleaned.append(raw[line_end + 2 :])
    meta_headers, meta_body = _split_part(cleaned[0])
    if meta_headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise MultipartError("the first part is not application/json")
    try:
        metadata = json.loads(meta_body)
    except (ValueError, UnicodeDecodeError):
        raise MultipartError("the first part is not JSON") from None
    if not isinstance(metadata, dict):
        raise MultipartError("the first part is not a JSON object")
    headers, content = _split_part(cleaned[1])
    location = headers.get("location")
    if location:
        return MediaPart(metadata=metadata, headers=headers, content=None, location=location)
    return MediaPart(metadata=metadata, headers=headers, content=content, location=None)

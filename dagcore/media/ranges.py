"""Single byte ranges of media downloads (RFC 9110 section 14, "Range Requests").

Browsers ask for ranges to seek in audio and video (Safari plays video only from a
server that answers them). Media content never changes once stored, so every
validator matches and ``If-Range`` need not be checked. One range is served;
several ranges, or a header this module cannot read, get the whole content (RFC
9110 lets a server ignore ``Range``).
"""

from __future__ import annotations

import re

_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})")


class UnsatisfiableRange(Exception):
    """The range lies beyond the content: 416 with ``Content-Range: bytes */<size>``."""


def parse_byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte positions to serve, or ``None`` for the whole content."""
    if not header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return None  # unreadable or several ranges: serve everything
    first_text, last_text = m.groups()
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)  # bytes=-N: the last N bytes
        if suffix == 0:
            raise UnsatisfiableRange
        return max(0, size - suffix), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # syntactically invalid: ignored
    if first >= size:
        raise UnsatisfiableRange
    last = int(last_text) if last_text else size - 1
    return first, min(last, size - 1)

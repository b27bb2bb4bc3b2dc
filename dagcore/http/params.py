"""Integers in request parameters and tokens.

``int()`` alone would also take ``" 1"``, ``"1_000"`` and non-ASCII digits (ARABIC-INDIC
DIGIT ONE, U+0661), and build numbers of any length: parameters and tokens take plain ASCII
digits of a bounded length only.
"""

from __future__ import annotations

from dagcore.http.errors import MatrixError


def ascii_uint(value: str, *, max_digits: int = 18) -> int | None:
    """The non-negative integer ``value`` spells in 1 to ``max_digits`` ASCII digits, else ``None``."""
    if not (value.isascii() and value.isdigit()) or len(value) > max_digits:
        return None
    return int(value)


def count_param(value: str | None, name: str, *, default: int, maximum: int) -> int:
    """An optional count (``limit``, ``from``...): ``default`` when absent, at most ``maximum``, else 400."""
    if value is None or value == "":
        return default
    number = ascii_uint(value, max_digits=9)
    if number is None:
        raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be a non-negative integer")
    return min(number, maximum)

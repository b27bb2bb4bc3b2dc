"""Canonical JSON encoding and the parsing of untrusted JSON bodies.

Spec: https://spec.matrix.org/v1.19/appendices/#canonical-json (the encoding
that every hash and signature in Matrix is computed over) and
https://spec.matrix.org/v1.19/rooms/v6/#canonical-json (room version 6+ refuse
events whose values fall outside that encoding's number rules).

Two jobs live here because they meet at the same edge: whatever
:func:`parse_json_body` accepts must be encodable by
:func:`encode_canonical_json` later (no NaN, no lone surrogates, bounded
nesting), otherwise a hostile body could make hashing or signing blow up deep
inside the event pipeline instead of being refused at the door with a 400.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from itertools import accumulate
from typing import Any

import canonicaljson

#: Largest integer allowed by canonical JSON: ``[-(2**53)+1, (2**53)-1]``.
CANONICALJSON_MAX_INT = 2**53 - 1
CANONICALJSON_MIN_INT = -CANONICALJSON_MAX_INT

#: Default maximum nesting depth of objects/arrays in untrusted bodies.
DEFAULT_MAX_DEPTH = 64

__all__ = [
    "CANONICALJSON_MAX_INT",
    "CANONICALJSON_MIN_INT",
    "DEFAULT_MAX_DEPTH",
    "JsonError",
    "check_event_values",
    "encode_canonical_json",
    "parse_json_body",
]


class JsonError(ValueError):
    """A body or value is refused; ``errcode`` is the Matrix error code to answer with.

    ``M_NOT_JSON``: the bytes are not JSON at all. ``M_BAD_JSON``: JSON, but not
    acceptable (NaN, lone surrogates, too deep, out-of-range numbers, ...).
    """

    def __init__(self, errcode: str, message: str) -> None:
        super().__init__(message)
        self.errcode = errcode
        self.message = message

    def __repr__(self) -> str:
        return f"JsonError({self.errcode!r}, {self.message!r})"


def encode_canonical_json(obj: object) -> bytes:
    """Encode ``obj`` as canonical JSON bytes (sorted keys, no whitespace, UTF-8).

    Spec: https://spec.matrix.org/v1.19/appendices/#canonical-json

    Floats are encoded the way Python writes them (``1.5``): the spec forbids
    floats, but room versions 1-5 contain historical events with floats, and
    their hashes were computed by other servers with exactly this rendering, so
    rewriting them would make us believe those events were tampered with.
    Strictness is enforced where values enter (:func:`check_event_values`).

    Raises ``ValueError`` for NaN/Infinity and ``UnicodeEncodeError`` for lone
    surrogates: neither has a canonical encoding.
    """
    return canonicaljson.encode_canonical_json(obj)


# -- parsing untrusted bodies -------------------------------------------------

# A JSON string token. Possessive quantifiers (Python 3.11+) keep this linear:
# the regex engine never backtracks into a string it already consumed, so a
# megabyte of backslashes cannot make the depth scan quadratic.
_STRING_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
# Everything that is not a bracket, removed before the depth count.
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_BRACKET_DEPTH_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
# A JSON \u escape of a UTF-16 surrogate; only then can a lone one appear.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class _BadValue(Exception):
    """Raised from inside json.loads hooks; turned into M_BAD_JSON."""


def _max_nesting_depth(text: str) -> int:
    """The deepest object/array nesting in ``text``, computed without recursion.

    String tokens are removed first so brackets inside strings do not count. Up
    to the first syntax error this tokenises exactly as json.loads does, so it
    never under-counts what json.loads would recurse into; after one (e.g. an
    unterminated string) it may over-count, which only refuses invalid JSON.
    """
    if text.count("[") + text.count("{") == 0:
        return 0
    brackets = _NOT_BRACKETS.sub("", _STRING_TOKEN.sub("", text))
    if not brackets:
        return 0
    # map/accumulate/max all run in C: a megabyte of brackets takes milliseconds.
    return max(accumulate(map(_BRACKET_DEPTH_DELTA.__getitem__, brackets)))


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity/-Infinity literals; they are not JSON
    # (RFC 8259) and canonical JSON cannot encode them.
    raise _BadValue(f"{name} is not a valid JSON value")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # e.g. 1e400 overflows to inf, which has no canonical encoding.
        raise _BadValue(f"number {text[:32]} is out of range")
    return value


def _parse_float_exact(text: str) -> float | int:
    """Like :func:`_parse_float`, but a number whose value is an integer in the
    canonical range becomes an ``int`` (``1e10`` -> ``10000000000``)."""
    value = _parse_float(text)
    try:
        dec = Decimal(text)
    except InvalidOperation:  # pragma: no cover - json already validated the lexeme
        return value
    # Compare the magnitude first: to_integral_value() on 1e999999 is cheap, but
    # int() of it would build a million-digit number.
    if abs(dec) <= CANONICALJSON_MAX_INT and dec == dec.to_integral_value():
        return int(dec)
    return value


def _iter_strings(value: Any) -> Iterator[str]:
    """Every string (keys included) in a parsed JSON value, iteratively."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for key, sub in item.items():
                yield key
                stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)


def _has_lone_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_json_body(
    data: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    integral_floats_as_ints: bool = False,
    allow_nul: bool = True,
) -> Any:
    """Parse an untrusted JSON body (client request, federation request or response).

    Raises :class:`JsonError` and nothing else, whatever the bytes:

    * ``M_NOT_JSON`` -- empty, not UTF-8, or not JSON text.
    * ``M_BAD_JSON`` -- ``NaN``/``Infinity``/``-Infinity`` literals, numbers that
      overflow a double, integers too long to parse, a lone UTF-16 surrogate
      (``"\\ud800"``) in a string or key, or nesting deeper than ``max_depth``.

    With ``allow_nul=False`` a string or key holding U+0000 is ``M_BAD_JSON`` too: JSON
    allows it, but PostgreSQL text cannot store it, so a client body that would put it
    into a column is refused whole rather than failing halfway (clients never need it).

    Duplicate keys are accepted (the last one wins), as most JSON parsers do.

    Numbers with a fraction or exponent parse as ``float`` by default, so hashes
    of historical v1-v5 events containing floats match what their origin
    computed. With ``integral_floats_as_ints`` a number whose *value* is an
    integer in the canonical range parses as ``int`` -- the reading of the
    spec's canonical JSON example where ``1e10`` canonicalises to
    ``10000000000``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise JsonError("M_NOT_JSON", "Body must be bytes")
    if not data:
        raise JsonError("M_NOT_JSON", "Body is empty")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise JsonError("M_NOT_JSON", "Body is not valid UTF-8") from None

    # Depth is checked before json.loads, which recurses per nesting level: a
    # 10,000-deep body must be refused here, not by a RecursionError there.
    if _max_nesting_depth(text) > max_depth:
        raise JsonError("M_BAD_JSON", f"JSON is nested deeper than {max_depth} levels")

    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_parse_float_exact if integral_floats_as_ints else _parse_float,
        )
    except _BadValue as exc:
        raise JsonError("M_BAD_JSON", str(exc)) from None
    except json.JSONDecodeError as exc:
        raise JsonError("M_NOT_JSON", f"Body is not valid JSON: {exc.msg}") from None
    except ValueError as exc:
        # int() refuses integers longer than sys.get_int_max_str_digits().
        raise JsonError("M_BAD_JSON", f"JSON value out of range: {str(exc)[:80]}") from None
    except RecursionError:  # pragma: no cover - the depth scan makes this unreachable
        raise JsonError("M_BAD_JSON", "JSON is nested too deeply") from None

    # Lone surrogates can only come from \uD800-\uDFFF escapes (strict UTF-8
    # decoding already refused encoded ones), so only walk the value if the
    # text contains such an escape.
    if _SURROGATE_ESCAPE.search(text) and any(_has_lone_surrogate(s) for s in _iter_strings(value)):
        raise JsonError("M_BAD_JSON", "JSON string contains a lone UTF-16 surrogate")
    # U+0000 can only come from a \u0000 escape (strict parsing refuses raw control characters).
    if not allow_nul and "\\u0000" in text and any("\x00" in s for s in _iter_strings(value)):
        raise JsonError("M_BAD_JSON", "JSON strings must not contain U+0000 (NUL)")
    return value


# -- event value rules ----------------------------------------------------------


def check_event_values(obj: Any, *, strict: bool) -> None:
    """Refuse values that cannot appear in an event (``JsonError("M_BAD_JSON")``).

    Spec: https://spec.matrix.org/v1.19/appendices/#canonical-json and
    https://spec.matrix.org/v1.19/rooms/v6/#canonical-json.

    Always refused: integers outside ``[-(2**53)+1, (2**53)-1]``, NaN/Infinity,
    non-string object keys, strings with lone surrogates and non-JSON types --
    none of them round-trips through canonical JSON between implementations.
    ``strict`` (room versions 6+, ``RoomVersion.strict_canonicaljson``) also
    refuses floats, which the encoding does not permit. Booleans are not
    integers here even though Python says so.

    Room versions 1-5 may hold historical events with out-of-range integers
    (spec warning on the canonical JSON section); callers that must accept
    those over federation should not call this for v1-v5 received events.

    Walks the value with an explicit stack, so depth cannot raise RecursionError.
    """
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        value, path = stack.pop()
        if value is None or isinstance(value, bool | str):
            if isinstance(value, str) and _has_lone_surrogate(value):
                raise JsonError("M_BAD_JSON", f"String at {path or '<root>'} contains a lone surrogate")
            continue
        if isinstance(value, int):
            if not CANONICALJSON_MIN_INT <= value <= CANONICALJSON_MAX_INT:
                raise JsonError("M_BAD_JSON", f"Integer at {path or '<root>'} is out of range")
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise JsonError("M_BAD_JSON", f"Value at {path or '<root>'} is not a finite number")
            if strict:
                raise JsonError("M_BAD_JSON", f"Float at {path or '<root>'} is not allowed")
            continue
        if isinstance(value, dict):
            for key, sub in value.items():
                if not isinstance(key, str):
                    raise JsonError("M_BAD_JSON", f"Object key at {path or '<root>'} is not a string")
                if _has_lone_surrogate(key):
                    raise JsonError(
                        "M_BAD_JSON", f"Object key at {path or '<root>'} contains a lone surrogate"
                    )
                stack.append((sub, f"{path}.{key}" if path else key))
            continue
        if isinstance(value, list | tuple):
            stack.extend((sub, f"{path}[{i}]") for i, sub in enumerate(value))
            continue
        raise JsonError(
            "M_BAD_JSON", f"Value at {path or '<root>'} of type {type(value).__name__} is not JSON"
        )

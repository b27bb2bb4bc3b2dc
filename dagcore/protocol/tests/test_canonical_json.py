"""Canonical JSON encoding, untrusted body parsing and event value rules.

Spec: https://spec.matrix.org/v1.19/appendices/#canonical-json and
https://spec.matrix.org/v1.19/rooms/v6/#canonical-json.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagcore.protocol.canonical_json import (
    CANONICALJSON_MAX_INT,
    CANONICALJSON_MIN_INT,
    JsonError,
    check_event_values,
    encode_canonical_json,
    parse_json_body,
)

# -- the spec's examples, byte for byte ----------------------------------------------

SPEC_EXAMPLES = [
    ("{}", b"{}"),
    ('{\n    "one": 1,\n    "two": "Two"\n}', b'{"one":1,"two":"Two"}'),
    ('{\n    "b": "2",\n    "a": "1"\n}', b'{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', b'{"a":"1","b":"2"}'),
    (
        """{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}""",
        b'{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":'
        b'[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},'
        b'"success":true}}',
    ),
    ('{\n    "a": "日本語"\n}', '{"a":"日本語"}'.encode()),
    ('{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'.encode()),
    ('{\n    "a": "\\u65E5"\n}', '{"a":"日"}'.encode()),
    ('{\n    "a": null\n}', b'{"a":null}'),
]


@pytest.mark.parametrize(("given_json", "expected"), SPEC_EXAMPLES)
def test_spec_canonical_json_examples_are_reproduced_byte_for_byte(given_json: str, expected: bytes) -> None:
    assert encode_canonical_json(parse_json_body(given_json.encode("utf-8"))) == expected


def test_spec_example_with_negative_zero_and_exponent_canonicalises_to_integers() -> None:
    # Spec: {"a": -0, "b": 1e10} -> {"a":0,"b":10000000000}. 1e10 is the integer
    # 10000000000 written with an exponent; reading it as such needs the opt-in.
    body = b'{\n    "a": -0,\n    "b": 1e10\n}'
    value = parse_json_body(body, integral_floats_as_ints=True)
    assert encode_canonical_json(value) == b'{"a":0,"b":10000000000}'


def test_an_exponent_number_stays_a_float_by_default_and_is_refused_in_strict_events() -> None:
    value = parse_json_body(b'{"a": -0, "b": 1e10}')
    assert value == {"a": 0, "b": 1e10}
    assert isinstance(value["a"], int)
    assert isinstance(value["b"], float)
    with pytest.raises(JsonError) as exc:
        check_event_values(value, strict=True)
    assert exc.value.errcode == "M_BAD_JSON"


def test_integral_floats_outside_the_canonical_range_stay_floats() -> None:
    assert isinstance(parse_json_body(b"1e300", integral_floats_as_ints=True), float)
    assert parse_json_body(b"1.5", integral_floats_as_ints=True) == 1.5
    assert parse_json_body(b"2.0", integral_floats_as_ints=True) == 2
    assert isinstance(parse_json_body(b"2.0", integral_floats_as_ints=True), int)


def test_canonical_encoding_is_utf8_without_ascii_escapes_and_escapes_control_characters() -> None:
    assert encode_canonical_json({"a": "é\u2028\n\x01"}) == '{"a":"é\u2028\\n\\u0001"}'.encode()


def test_canonical_encoding_refuses_nan_and_lone_surrogates() -> None:
    with pytest.raises(ValueError):
        encode_canonical_json({"a": float("nan")})
    with pytest.raises(UnicodeEncodeError):
        encode_canonical_json({"a": "\ud800"})


# -- parse_json_body: what is refused and how ----------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{",
        b"{'a': 1}",
        b"\xff\xfe{}",
        b"\xc3\x28",
        b"nope",
        b"{}{}",
        b"[1,]",
        b"\xef\xbb\xbf{}",
    ],
)
def test_non_json_bodies_are_refused_with_m_not_json(body: bytes) -> None:
    with pytest.raises(JsonError) as exc:
        parse_json_body(body)
    assert exc.value.errcode == "M_NOT_JSON"


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b"[NaN]",
        b'{"a": 1e400}',
        b'{"a": "\\ud800"}',
        b'{"\\udfff": 1}',
        b'["ok", {"x": ["\\uDC00 trailing"]}]',
        b'"\\ud83d"',
        b"1" * 5000,  # longer than Python's int-parsing digit limit
    ],
)
def test_json_with_values_that_are_not_canonical_is_refused_with_m_bad_json(body: bytes) -> None:
    with pytest.raises(JsonError) as exc:
        parse_json_body(body)
    assert exc.value.errcode == "M_BAD_JSON"


def test_a_surrogate_pair_escape_is_a_valid_character() -> None:
    assert parse_json_body(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}


def test_duplicate_keys_are_accepted_and_the_last_one_wins() -> None:
    assert parse_json_body(b'{"a": 1, "a": 2}') == {"a": 2}


def test_nesting_up_to_max_depth_is_accepted_and_one_more_level_is_refused() -> None:
    assert parse_json_body(b"[" * 64 + b"]" * 64) is not None
    with pytest.raises(JsonError) as exc:
        parse_json_body(b"[" * 65 + b"]" * 65)
    assert exc.value.errcode == "M_BAD_JSON"
    assert parse_json_body(b'{"a":' * 3 + b"1" + b"}" * 3, max_depth=3) == {"a": {"a": {"a": 1}}}
    with pytest.raises(JsonError):
        parse_json_body(b'{"a":' * 4 + b"1" + b"}" * 4, max_depth=3)


def test_a_ten_thousand_deep_body_is_refused_without_recursion_error() -> None:
    for body in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, b"[" * 100_000):
        with pytest.raises(JsonError) as exc:
            parse_json_body(body)
        assert exc.value.errcode == "M_BAD_JSON"


def test_brackets_inside_strings_do_not_count_towards_depth() -> None:
    body = json.dumps({"a": "[" * 1000 + "{" * 1000, "b": '\\"[[[[', "c": ["]]]]"]}).encode()
    assert parse_json_body(body)["c"] == ["]]]]"]


# -- properties -------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=CANONICALJSON_MIN_INT, max_value=CANONICALJSON_MAX_INT)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


def _reverse_key_order(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_key_order(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_key_order(v) for v in value]
    return value


@given(json_values)
def test_canonical_json_round_trips_through_the_body_parser(value: Any) -> None:
    encoded = encode_canonical_json(value)
    assert parse_json_body(encoded) == value
    assert encode_canonical_json(parse_json_body(encoded)) == encoded


@given(json_values, st.sampled_from([None, 0, 2, "\t"]), st.booleans())
def test_canonical_json_does_not_depend_on_key_order_or_whitespace(
    value: Any, indent: int | str | None, ensure_ascii: bool
) -> None:
    reordered = json.dumps(_reverse_key_order(value), indent=indent, ensure_ascii=ensure_ascii)
    assert encode_canonical_json(parse_json_body(reordered.encode())) == encode_canonical_json(value)


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_parse_json_body_raises_only_json_error_on_arbitrary_bytes(data: bytes) -> None:
    try:
        value = parse_json_body(data)
    except JsonError as exc:
        assert exc.errcode in ("M_NOT_JSON", "M_BAD_JSON")
    else:
        encode_canonical_json(value)  # whatever is accepted can be hashed and signed


json_ish = st.text(alphabet='[]{}",:\\ 01eE.-+nultrfaNIy\ud83d\\u', max_size=400)


@given(json_ish, st.integers(min_value=0, max_value=20_000))
@settings(max_examples=300)
def test_parse_json_body_raises_only_json_error_on_nested_and_bracket_heavy_input(
    text: str, depth: int
) -> None:
    body = ("[" * depth + text + "]" * depth).encode("utf-8", "surrogatepass")
    try:
        value = parse_json_body(body)
    except JsonError:
        pass
    else:
        encode_canonical_json(value)


@given(json_values, st.integers(min_value=1, max_value=80))
def test_parse_json_body_accepts_a_valid_value_exactly_when_it_fits_max_depth(value: Any, wrap: int) -> None:
    body = b"[" * wrap + encode_canonical_json(value) + b"]" * wrap
    try:
        parse_json_body(body, max_depth=64)
    except JsonError as exc:
        assert exc.errcode == "M_BAD_JSON"
        assert wrap > 64 - _depth(value)
    else:
        assert wrap + _depth(value) <= 64


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


# -- check_event_values -----------------------------------------------------------------


def test_a_float_in_v6_plus_event_content_is_refused() -> None:
    with pytest.raises(JsonError) as exc:
        check_event_values({"content": {"body": "x", "weight": 1.5}}, strict=True)
    assert exc.value.errcode == "M_BAD_JSON"
    assert "content.weight" in exc.value.message


def test_a_float_in_v1_to_v5_event_content_is_allowed() -> None:
    check_event_values({"content": {"weight": 1.5}}, strict=False)


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("number", [2**53, -(2**53), 2**64, -(2**70)])
def test_integers_outside_the_canonical_range_are_always_refused_in_events(strict: bool, number: int) -> None:
    with pytest.raises(JsonError):
        check_event_values({"content": {"n": [number]}}, strict=strict)


@pytest.mark.parametrize("number", [2**53 - 1, -(2**53) + 1, 0])
def test_integers_at_the_canonical_range_bounds_are_allowed(number: int) -> None:
    check_event_values({"depth": number}, strict=True)


@pytest.mark.parametrize(
    "value",
    [{"a": float("nan")}, {"a": float("inf")}, {"a": "\udc00"}, {"\ud800": 1}, {1: "int key"}, {"a": {1, 2}}],
)
def test_values_that_cannot_be_canonical_json_are_refused_even_when_not_strict(value: Any) -> None:
    with pytest.raises(JsonError):
        check_event_values(value, strict=False)


def test_booleans_are_not_mistaken_for_out_of_range_integers() -> None:
    check_event_values({"a": True, "b": False, "c": None}, strict=True)


def test_check_event_values_walks_very_deep_values_without_recursion() -> None:
    deep: Any = 1.5
    for _ in range(50_000):
        deep = [deep]
    with pytest.raises(JsonError):
        check_event_values(deep, strict=True)


def test_nul_is_valid_json_but_refused_where_callers_ask() -> None:
    """JSON allows U+0000; client bodies refuse it (PostgreSQL text cannot hold it), keys included."""
    assert parse_json_body(b'{"a": "x\\u0000y"}') == {"a": "x\x00y"}
    for body in (b'{"a": "x\\u0000y"}', b'{"a\\u0000": 1}', b'[[{"b": ["\\u0000"]}]]'):
        with pytest.raises(JsonError) as exc:
            parse_json_body(body, allow_nul=False)
        assert exc.value.errcode == "M_BAD_JSON"
    # An escaped backslash followed by "u0000" is six ordinary characters, not NUL.
    assert parse_json_body(b'{"a": "\\\\u0000"}', allow_nul=False) == {"a": "\\u0000"}

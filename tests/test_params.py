"""Integers in parameters and tokens (``dagcore.http.params``): plain ASCII digits, bounded length."""

from __future__ import annotations

import pytest

from dagcore.http.errors import MatrixError
from dagcore.http.params import ascii_uint, count_param


@pytest.mark.parametrize(
    ("value", "max_digits", "expected"),
    [("0", 18, 0), ("42", 18, 42), ("9" * 18, 18, 10**18 - 1), ("9" * 19, 18, None), ("", 18, None),
     (" 1", 18, None), ("1_0", 18, None), ("-1", 18, None), ("\u0661", 18, None), ("1e3", 18, None),
     ("123", 2, None)],
)  # fmt: skip
def test_ascii_uint(value: str, max_digits: int, expected: int | None) -> None:
    assert ascii_uint(value, max_digits=max_digits) == expected


def test_count_param() -> None:
    assert count_param(None, "limit", default=10, maximum=50) == 10
    assert count_param("", "limit", default=10, maximum=50) == 10
    assert count_param("7", "limit", default=10, maximum=50) == 7
    assert count_param("999", "limit", default=10, maximum=50) == 50  # clamped
    for bad in ("-1", "x", "9" * 10):
        with pytest.raises(MatrixError) as exc:
            count_param(bad, "limit", default=10, maximum=50)
        assert exc.value.status == 400 and exc.value.errcode == "M_INVALID_PARAM"

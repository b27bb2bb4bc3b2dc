"""Byte range parsing (RFC 9110 section 14) for media downloads."""

from __future__ import annotations

import pytest

from dagcore.media.ranges import UnsatisfiableRange, parse_byte_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("", 10, None),
        ("bytes=0-4", 10, (0, 4)),
        ("bytes=3-", 10, (3, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=2-99", 10, (2, 9)),
        (" bytes=0-0 ", 10, (0, 0)),
        ("bytes=5-2", 10, None),
        ("bytes=0-1,3-4", 10, None),
        ("bytes=-", 10, None),
        ("bits=0-1", 10, None),
        ("bytes=" + "9" * 19 + "-", 10, None),
        ("bytes=\u0661-2", 10, None),  # only ASCII digits
    ],
)
def test_ranges(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_byte_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0)]
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(UnsatisfiableRange):
        parse_byte_range(header, size)

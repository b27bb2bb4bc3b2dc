"""After login the console goes back only to one of its own pages (no open redirect)."""

from __future__ import annotations

import pytest

from politburo.console.page import safe_next


@pytest.mark.parametrize(
    "value",
    [None, "", "https://evil.example/", "//evil.example/x", "/\\evil.example", "\\\\evil.example",
     "/\t/evil.example", "/\n/evil.example", " /users", "users", "javascript:alert(1)", "/" + "a" * 3000],
)  # fmt: skip
def test_anything_but_a_local_path_goes_to_the_dashboard(value: str | None) -> None:
    assert safe_next(value) == "/"


@pytest.mark.parametrize("value", ["/", "/users", "/users/%40a%3Aexample.com?notice=x", "/audit?actor=%40a"])
def test_a_local_path_is_kept(value: str) -> None:
    assert safe_next(value) == value

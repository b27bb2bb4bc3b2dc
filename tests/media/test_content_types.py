"""Upload content types and the browser-safety of download headers."""

from __future__ import annotations

import pytest

from dagcore.media import content_types as ct


def test_a_missing_content_type_is_octet_stream_and_types_are_lower_cased() -> None:
    assert ct.normalize_content_type(None) == "application/octet-stream"
    assert ct.normalize_content_type("") == "application/octet-stream"
    assert ct.normalize_content_type("Image/PNG") == "image/png"
    assert ct.normalize_content_type('text/plain; Charset="utf-8"') == 'text/plain; charset="utf-8"'


@pytest.mark.parametrize(
    "bad",
    ["png", "image/", "/png", "image/png\r\nX-Evil: 1", "image/png; charset", "text/plain; a=b c", "x" * 300],
)
def test_malformed_content_types_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        ct.normalize_content_type(bad)


@pytest.mark.parametrize(
    "kind", ["image/png", "image/jpeg", "video/mp4", "audio/ogg", "text/plain", "image/webp"]
)
def test_passive_types_are_served_inline(kind: str) -> None:
    assert ct.is_inline_safe(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "text/html",
        "image/svg+xml",
        "application/xhtml+xml",
        "application/javascript",
        "text/javascript",
        "text/xml",
        "application/pdf",
        "application/octet-stream",
    ],
)
def test_active_or_unknown_types_are_never_inline(kind: str) -> None:
    assert not ct.is_inline_safe(kind)
    assert ct.content_disposition(inline=ct.is_inline_safe(kind), filename="x").startswith("attachment")


def test_text_gets_an_explicit_charset_other_types_are_untouched() -> None:
    assert ct.served_content_type("text/plain") == "text/plain; charset=utf-8"
    assert ct.served_content_type("text/plain; charset=latin-1") == "text/plain; charset=latin-1"
    assert ct.served_content_type("image/png") == "image/png"


def test_file_names_are_quoted_when_plain_and_rfc_8187_encoded_otherwise() -> None:
    assert ct.content_disposition(inline=True, filename="cat.png") == 'inline; filename="cat.png"'
    assert ct.content_disposition(inline=False, filename=None) == "attachment"
    assert ct.content_disposition(inline=True, filename="Straße €.png") == (
        "inline; filename*=utf-8''Stra%C3%9Fe%20%E2%82%AC.png"
    )
    # Quote, backslash and control characters never reach the header raw.
    for name in ('a"b.txt', "a\\b.txt", "a\r\nSet-Cookie: x"):
        header = ct.content_disposition(inline=False, filename=name)
        assert header.startswith("attachment; filename*=utf-8''")
        assert '"' not in header and "\\" not in header and "\r" not in header and "\n" not in header


def test_upload_file_names_with_control_characters_or_too_long_are_refused() -> None:
    assert ct.check_upload_filename("War and Peace.pdf") == "War and Peace.pdf"
    assert ct.check_upload_filename("") is None
    for bad in ("a\x00b", "line\nbreak", "x" * 256):
        with pytest.raises(ValueError):
            ct.check_upload_filename(bad)

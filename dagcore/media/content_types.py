"""Content types of uploads, and the headers that make serving them safe in a browser.

Uploaded bytes are served from the homeserver's own origin, so a file that a
browser would render as a page (HTML, SVG, XHTML, XML, JavaScript...) could run
script with access to that origin. Defences, as the spec recommends
(https://spec.matrix.org/v1.19/client-server-api/#serving-inline-content) and as
Synapse does:

- ``Content-Disposition: inline`` only for the spec's allow-list of types a
  browser displays passively; everything else is ``attachment`` (downloaded);
- ``X-Content-Type-Options: nosniff`` so the browser never second-guesses the type;
- a sandboxing ``Content-Security-Policy`` so that even a rendered document
  cannot run script or load anything;
- file names in ``Content-Disposition`` encoded per RFC 6266 / RFC 8187, so a
  name can never inject header syntax.
"""

from __future__ import annotations

import re
from urllib.parse import quote

DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: Spec "Serving inline content": types that SHOULD be served ``inline``. Images
#: except SVG, audio, video, and inert text. Everything else is ``attachment``.
INLINE_CONTENT_TYPES = frozenset(
    {
        "text/css",
        "text/plain",
        "text/csv",
        "application/json",
        "application/ld+json",
        "image/jpeg",
        "image/gif",
        "image/png",
        "image/apng",
        "image/webp",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/quicktime",
        "audio/mp4",
        "audio/webm",
        "audio/aac",
        "audio/mpeg",
        "audio/ogg",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/flac",
        "audio/x-flac",
    }
)

#: Sent with every download and thumbnail (the value Synapse uses): no script,
#: no plugins except PDF viewers, nothing loaded from elsewhere.
CONTENT_SECURITY_POLICY = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
    "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
)

#: Headers on every media answer. CORP lets web clients on other origins embed
#: the media (spec: "Cross-Origin-Resource-Policy: cross-origin" for media).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cross-Origin-Resource-Policy": "cross-origin",
}

# RFC 9110 tokens and quoted strings (ASCII only; no CR/LF can get through).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # noqa: S105 - an RFC 9110 token, not a secret
_QUOTED = r'"(?:[\t !#-\[\]-~]|\\[\t !-~])*"'
_PARAM = re.compile(rf"\s*;\s*({_TOKEN})=({_TOKEN}|{_QUOTED})")
_ESSENCE = re.compile(rf"\s*({_TOKEN})/({_TOKEN})")
MAX_CONTENT_TYPE_LENGTH = 255


def normalize_content_type(raw: str | None) -> str:
    """The stored form of an upload's ``Content-Type``; ``ValueError`` if it is not a media type.

    Missing or empty means ``application/octet-stream`` (spec v1.12: "Defaults to
    application/octet-stream if it is not set"). The type/subtype is lower-cased
    (they are case-insensitive), parameters are kept as given.
    """
    if raw is None or not raw.strip():
        return DEFAULT_CONTENT_TYPE
    if len(raw) > MAX_CONTENT_TYPE_LENGTH:
        raise ValueError("Content-Type is too long")
    m = _ESSENCE.match(raw)
    if m is None:
        raise ValueError("Content-Type is not a media type (type/subtype)")
    parts = [f"{m.group(1).lower()}/{m.group(2).lower()}"]
    pos = m.end()
    while pos < len(raw.rstrip()):
        p = _PARAM.match(raw, pos)
        if p is None:
            raise ValueError("Content-Type has malformed parameters")
        parts.append(f"{p.group(1).lower()}={p.group(2)}")
        pos = p.end()
    return "; ".join(parts)


def essence(content_type: str) -> str:
    """``type/subtype`` without parameters, lower-cased."""
    return content_type.split(";", 1)[0].strip().lower()


def is_inline_safe(content_type: str) -> bool:
    return essence(content_type) in INLINE_CONTENT_TYPES


def served_content_type(content_type: str) -> str:
    """The ``Content-Type`` of a download: the stored one, with a charset for text.

    Naming the charset of ``text/*`` (spec: "Adding a charset to text/* content
    types" is a reasonable change) stops browsers guessing one, an old XSS trick.
    """
    if essence(content_type).startswith("text/") and "charset=" not in content_type.lower():
        return f"{content_type}; charset=utf-8"
    return content_type


# RFC 8187 attr-char, minus what ``quote`` always keeps (letters, digits, "_.-~").
_ATTR_CHAR_EXTRA = "!#$&+^`|"


def content_disposition(*, inline: bool, filename: str | None) -> str:
    """``inline``/``attachment`` with the file name per RFC 6266.

    A name of printable ASCII without quote or backslash goes in a quoted
    ``filename="..."``; anything else (non-ASCII, control characters) as
    ``filename*=utf-8''<percent-encoded UTF-8>`` (RFC 8187), which every browser
    and client library reads and which cannot carry raw header syntax.
    """
    disposition = "inline" if inline else "attachment"
    if not filename:
        return disposition
    if all(0x20 <= ord(c) <= 0x7E for c in filename) and '"' not in filename and "\\" not in filename:
        return f'{disposition}; filename="{filename}"'
    encoded = quote(filename.encode("utf-8", "surrogatepass"), safe=_ATTR_CHAR_EXTRA)
    return f"{disposition}; filename*=utf-8''{encoded}"


#: Longest ``filename`` kept from an upload (it goes into a header on every download).
MAX_FILENAME_LENGTH = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_upload_filename(filename: str | None) -> str | None:
    """The ``filename`` query parameter of an upload; ``ValueError`` if unusable.

    Empty means none. Control characters (NUL, CR, LF...) have no place in a
    file name and would only be trouble in headers, so they are refused.
    """
    if filename is None or filename == "":
        return None
    if len(filename) > MAX_FILENAME_LENGTH:
        raise ValueError(f"filename is longer than {MAX_FILENAME_LENGTH} characters")
    if _CONTROL.search(filename):
        raise ValueError("filename contains control characters")
    try:
        filename.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("filename is not valid UTF-8") from None
    return filename

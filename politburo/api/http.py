"""JSON request bodies of Politburo's admin API (Politburo does not use Tribune's request layer)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from dagcore.http.errors import MatrixError
from dagcore.protocol.canonical_json import JsonError, parse_json_body

MAX_BODY = 64 * 1024


def json_object_body(request: HttpRequest) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``), or the Matrix error for it."""
    if not request.body.strip():
        return {}
    if len(request.body) > MAX_BODY:
        raise MatrixError(413, "M_TOO_LARGE", f"Request body larger than {MAX_BODY} bytes")
    try:
        body = parse_json_body(request.body, allow_nul=False)
    except JsonError as exc:
        raise MatrixError(400, exc.errcode, str(exc)) from None
    if not isinstance(body, dict):
        raise MatrixError(400, "M_BAD_JSON", "Body must be a JSON object")
    return body

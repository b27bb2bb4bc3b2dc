"""JSON responses shared by the servers."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse

from dagcore.http.errors import MatrixError


def json_response(data: Any, status: int = 200) -> HttpResponse:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return HttpResponse(body, status=status, content_type="application/json")


def error_response(exc: MatrixError) -> HttpResponse:
    return json_response(exc.to_json(), status=exc.status)

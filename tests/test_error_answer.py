"""How Tribune turns what a view raised into the spec's error JSON (``tribune.http.error_answer``)."""

from __future__ import annotations

import json

from django.db import DataError
from django.test import RequestFactory

from dagcore.http.errors import MatrixError
from tribune.http import error_answer


def _answer(exc: Exception) -> tuple[int, dict]:
    response = error_answer(RequestFactory().put("/_matrix/client/v3/x"), exc)
    return response.status_code, json.loads(response.content)


def test_a_value_the_database_refuses_is_the_clients_400_not_a_500() -> None:
    """Safety net under the validations: a too-long value that slipped through answers 400."""
    status, body = _answer(DataError("value too long for type character varying(255)"))
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    assert "varying" not in body["error"]  # no database details leak


def test_matrix_errors_pass_through_and_bugs_are_500() -> None:
    assert _answer(MatrixError(403, "M_FORBIDDEN", "no")) == (403, {"errcode": "M_FORBIDDEN", "error": "no"})
    status, body = _answer(RuntimeError("boom"))
    assert status == 500 and body == {"errcode": "M_UNKNOWN", "error": "Internal server error"}

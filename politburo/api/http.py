"""The request layer of Politburo's admin API (Politburo does not use Tribune's): JSON in
and out, errors in the Matrix shape, the caller authenticated as a server admin."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from dagcore.actions.admin_users import access_admin
from dagcore.http.errors import MatrixError
from dagcore.http.responses import error_response, json_response
from dagcore.http.tokens import extract_access_token
from dagcore.protocol.canonical_json import JsonError, parse_json_body

ApiView = Callable[..., Any]
logger = logging.getLogger("politburo")

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


def api_endpoint(*methods: str, admin: bool = True) -> Callable[[ApiView], Callable[..., HttpResponse]]:
    """Wrap a view answering JSON (a value, or ``(status, value)``); with ``admin`` the view gets
    the server admin the access token belongs to as its second argument."""

    def decorator(view: ApiView) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, **kwargs: str) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise MatrixError(405, "M_UNRECOGNIZED", f"Method {request.method} not allowed here")
                # Matched on the raw path (as Tribune does): decode %40 and %3A of user IDs here.
                params = {k: unquote(v, errors="strict") for k, v in kwargs.items()}
                if admin:
                    result = view(request, access_admin(extract_access_token(request)), **params)
                else:
                    result = view(request, **params)
            except UnicodeDecodeError:
                return error_response(MatrixError(400, "M_INVALID_PARAM", "Path parameters must be UTF-8"))
            except MatrixError as exc:
                return error_response(exc)
            except Exception:
                logger.exception("unhandled error in %s %s", request.method, request.path)
                return error_response(MatrixError(500, "M_UNKNOWN", "Internal server error"))
            if isinstance(result, tuple):
                return json_response(result[1], status=result[0])
            return json_response(result)

        return wrapper

    return decorator

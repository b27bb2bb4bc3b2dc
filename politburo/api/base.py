"""The admin JSON API's foundation on Django REST framework: what every endpoint shares.

Write an endpoint as an :class:`AdminAPIView` subclass (``get``/``post``/``put``/``delete``
methods, path parameters as keyword arguments) and route it in ``politburo/urls.py``::

    class UserDevices(AdminAPIView):
        '''GET /_synapse/admin/v2/users/{userId}/devices'''

        def get(self, request: Request, user_id: str) -> Response:
            offset, limit = page_params(request)
            ...
            return Response(page_json("devices", rows, offset=offset, limit=limit, total=total))

* **Authentication** (:class:`AdminTokenAuthentication`): an access token only, from
  ``Authorization: Bearer`` or the ``access_token`` query parameter, as Synapse. Never the
  console's cookie (a page elsewhere could make a browser send it). ``request.user`` is the
  :class:`dagcore.models.User`; ``request.auth`` the token.
* **Permission** (:class:`IsServerAdmin`): 401 ``M_MISSING_TOKEN`` / ``M_UNKNOWN_TOKEN``,
  403 ``M_FORBIDDEN`` "You are not a server admin" (Synapse's answers).
  :class:`PublicAPIView` skips both (``server_version``, shared-secret ``register``).
* **Errors**: raise :class:`dagcore.http.errors.MatrixError`; :func:`exception_handler` turns it
  and DRF's own exceptions into ``{"errcode", "error"}`` with the right status; anything
  unexpected is a logged 500 ``M_UNKNOWN``.
* **Input**: JSON bodies only (strict parser, 64 KiB, no NUL, any ``Content-Type`` as Synapse
  accepts), query parameters via :func:`page_params`, :func:`bool_param`; NUL refused in path
  and query. **Output**: JSON only (no browsable API, no content negotiation).
* **Pagination** (Synapse's): ``from`` (offset, default 0) and ``limit`` (default 100) in;
  ``total`` and, when more remain, ``next_token`` out (:func:`page_json`).
* **Audit**: :func:`api_actor` is the :class:`dagcore.actions.audit.Actor` of the request
  (``via="api"``) to pass to actions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework import exceptions as drf_exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dagcore.actions import accounts as account_actions
from dagcore.actions.audit import Actor
from dagcore.http.endpoint import check_no_nul, decode_path_params, matrix_error_answer
from dagcore.http.errors import MatrixError
from dagcore.http.params import count_param
from dagcore.http.tokens import extract_access_token
from dagcore.models import User
from dagcore.protocol.canonical_json import JsonError, parse_json_body

logger = logging.getLogger("dagma.politburo.api")

#: Largest admin API body (user records, passwords, lists of device IDs: small).
MAX_BODY = 64 * 1024
DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000


# --------------------------------------------------------------------------- authentication


class AdminTokenAuthentication(BaseAuthentication):
    """The access token's owner (Synapse's ways: header, or ``access_token`` query)."""

    def authenticate(self, request: Request) -> tuple[User, str] | None:
        token = extract_access_token(request._request)
        if token is None:
            return None
        owner = account_actions.access_token_owner(token)
        return owner.user, token

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class IsServerAdmin(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is None:
            raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token.")
        if not isinstance(user, User) or not user.is_admin:
            raise MatrixError(403, "M_FORBIDDEN", "You are not a server admin")
        return True


# --------------------------------------------------------------------------- input and output


class MatrixJSONParser(BaseParser):
    """JSON bodies with the client API's strictness (and ``{}`` for an empty body)."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read(MAX_BODY + 1) if stream is not None else b""
        if len(raw) > MAX_BODY:
            raise MatrixError(413, "M_TOO_LARGE", f"Request body larger than {MAX_BODY} bytes")
        if not raw.strip():
            return {}
        try:
            return parse_json_body(raw, allow_nul=False)
        except JsonError as exc:
            raise MatrixError(400, exc.errcode, str(exc)) from None


class MatrixJSONRenderer(JSONRenderer):
    charset = None  # application/json, as the rest of the server answers


class JSONOnly(BaseContentNegotiation):
    """Always JSON, whatever ``Accept`` says (a browser gets JSON, not a 406)."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


def _drf_error(exc: drf_exceptions.APIException) -> MatrixError:
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return MatrixError(405, "M_UNRECOGNIZED", "Unrecognized request")
    if isinstance(exc, drf_exceptions.ParseError):
        return MatrixError(400, "M_NOT_JSON", "Content not JSON.")
    if isinstance(exc, drf_exceptions.NotAuthenticated):
        return MatrixError(401, "M_MISSING_TOKEN", "Missing access token.")
    if isinstance(exc, drf_exceptions.AuthenticationFailed):
        return MatrixError(401, "M_UNKNOWN_TOKEN", "Unrecognised access token.")
    if isinstance(exc, drf_exceptions.PermissionDenied):
        return MatrixError(403, "M_FORBIDDEN", "You are not a server admin")
    if isinstance(exc, drf_exceptions.NotFound):
        return MatrixError(404, "M_NOT_FOUND", "Not found")
    if isinstance(exc, drf_exceptions.Throttled):
        return MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests")
    return MatrixError(
        exc.status_code, "M_INVALID_PARAM" if exc.status_code == 400 else "M_UNKNOWN", str(exc.detail)
    )


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response:
    """Every failure as Matrix error JSON (DRF's ``EXCEPTION_HANDLER``): a ``MatrixError`` as
    raised, DRF's own exceptions mapped, a value the database refuses 400, anything else a
    logged 500 ``M_UNKNOWN``."""
    if isinstance(exc, drf_exceptions.APIException):
        exc = _drf_error(exc)
    if not isinstance(exc, MatrixError):
        view = context.get("view")
        request = getattr(getattr(view, "request", None), "_request", None)
        if request is None:
            logger.error("unhandled error in the admin API", exc_info=exc)
            exc = MatrixError(500, "M_UNKNOWN", "Internal server error")
        else:
            answer = matrix_error_answer(request, exc)  # logs unexpected errors with their traceback
            return Response(json.loads(answer.content), status=answer.status_code)
    return Response(exc.to_json(), status=exc.status)


# --------------------------------------------------------------------------- views


class AdminAPIView(APIView):
    """Base of every admin API endpoint: a server admin's access token, Matrix-shaped JSON."""

    authentication_classes = [AdminTokenAuthentication]
    permission_classes = [IsServerAdmin]
    parser_classes = [MatrixJSONParser]
    renderer_classes = [MatrixJSONRenderer]
    content_negotiation_class = JSONOnly
    throttle_classes: list[Any] = []

    def get_exception_handler(self) -> Any:
        return exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        check_no_nul(request._request, decode_path_params(kwargs))
        super().initial(request, *args, **kwargs)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        # Path parameters are matched on the raw path (a user ID's "@" and ":" may come
        # percent-encoded): decode them once, here. Not UTF-8 -> 400 via the handler.
        try:
            kwargs = decode_path_params(kwargs)
        except UnicodeDecodeError:
            return matrix_error_answer(
                request, MatrixError(400, "M_INVALID_PARAM", "Path parameters must be UTF-8")
            )
        return super().dispatch(request, *args, **kwargs)

    def admin(self) -> User:
        """The server admin making the request."""
        user = self.request.user
        assert isinstance(user, User)
        return user


class PublicAPIView(AdminAPIView):
    """An admin API endpoint without authentication (Synapse's ``server_version``, ``register``)."""

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []


def json_body(request: Request) -> dict[str, Any]:
    """The body, which must be a JSON object."""
    data = request.data
    if not isinstance(data, dict):
        raise MatrixError(400, "M_BAD_JSON", "The request body must be a JSON object")
    return data


def api_actor(request: Request) -> Actor:
    user = request.user
    assert isinstance(user, User)
    ip = request._request.META.get("REMOTE_ADDR") or ""
    if settings.DAGMA_TRUST_X_FORWARDED_FOR and request._request.META.get("HTTP_X_FORWARDED_FOR"):
        ip = request._request.META["HTTP_X_FORWARDED_FOR"].split(",")[0].strip()
    return Actor(user_id=user.user_id, via="api", ip=str(ip))


# --------------------------------------------------------------------------- parameters and pages


def page_params(
    request: Request, *, default_limit: int = DEFAULT_LIMIT, max_limit: int = MAX_LIMIT
) -> tuple[int, int]:
    """Synapse's ``from`` (offset) and ``limit``; 400 ``M_INVALID_PARAM`` when not non-negative integers."""
    query = request.query_params
    offset = count_param(query.get("from"), "from", default=0, maximum=10**9)
    limit = count_param(query.get("limit"), "limit", default=default_limit, maximum=max_limit)
    return offset, limit


def page_json(key: str, items: list[Any], *, offset: int, total: int) -> dict[str, Any]:
    """``{key: items, "total": total}`` plus ``next_token`` (the next ``from``) when more remain."""
    out: dict[str, Any] = {key: items, "total": total}
    if offset + len(items) < total:
        out["next_token"] = str(offset + len(items))
    return out


def bool_param(request: Request, name: str, default: bool | None) -> bool | None:
    """A ``true``/``false`` query parameter (400 otherwise)."""
    value = request.query_params.get(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise MatrixError(
            400, "M_INVALID_PARAM", f"Query parameter {name!r} must be one of ['true', 'false']"
        )
    return value == "true"


def str_param(request: Request, name: str, *, max_length: int = 255) -> str | None:
    value = request.query_params.get(name)
    if value is not None and len(value) > max_length:
        raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter {name!r} is too long")
    return value or None

"""How an Embassy view is wired: authenticate the calling server, parse, call, shape the answer.

Spec: https://spec.matrix.org/v1.19/server-server-api/#request-authentication

A view decorated with :func:`federation_endpoint` gets a :class:`FederationRequest`
and returns a JSON-able dict (200), ``(status, dict)`` or an ``HttpResponse``; it
raises :class:`~dagcore.http.errors.MatrixError` for 4xx answers. With
``authenticated=True`` (every federation endpoint but the key and version ones)
the request must carry a valid ``Authorization: X-Matrix`` header:

* missing or malformed header, a ``destination`` that is not us, a signature
  that does not verify against the **raw** request URI (percent-encoding as
  sent), or no key of the origin to be found -> 401 ``M_UNAUTHORIZED``;
* an origin outside ``federation_domain_whitelist`` -> 403 ``M_FORBIDDEN``
  (checked before any of its keys is fetched).

An authenticated request ends our back-off from its origin (:func:`note_peer_contact`) and
is then held to ``rc_federation`` per origin (:mod:`embassy.ratelimit`: delayed, or 429
``M_LIMIT_EXCEEDED`` with ``retry_after_ms`` over the reject limit); transactions are
never delayed, as in Synapse, only queued.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from dagcore.clock import now_ms
from dagcore.federation.keyring import Keyring, get_keyring
from dagcore.federation.sender import note_peer_contact
from dagcore.http.errors import MatrixError
from dagcore.http.responses import error_response, json_response
from dagcore.observability.requests import note_requester
from dagcore.protocol.canonical_json import JsonError, parse_json_body
from dagcore.protocol.request_auth import RequestAuthError, parse_x_matrix, verify_request
from dagcore.server_keys import get_server_name
from embassy.ratelimit import get_federation_ratelimiter

logger = logging.getLogger("embassy")

#: Largest JSON body accepted (a /send transaction: 50 PDUs + 100 EDUs of at most 64 KiB each).
MAX_JSON_BODY = 16 * 1024 * 1024


@dataclass
class FederationRequest:
    request: HttpRequest
    #: The authenticated origin server (``None`` on unauthenticated endpoints).
    origin: str | None
    #: The parsed JSON body, ``None`` without one.
    body: Any


def raw_request_uri(request: HttpRequest) -> str:
    """The path and query exactly as sent, percent-encoding included (what the signature covers).

    Under ASGI the server's ``raw_path`` is kept; otherwise (WSGI, test clients) the
    path Django holds, re-encoded as Django would send it.
    """
    scope = getattr(request, "scope", None)
    raw = scope.get("raw_path") if isinstance(scope, dict) else None
    if isinstance(raw, bytes) and raw:
        path = raw.split(b"?", 1)[0].decode("latin-1")
    else:
        path = request.get_full_path().split("?", 1)[0]
    query = request.META.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path


def authorization_headers(request: HttpRequest) -> list[str]:
    """Every ``Authorization`` header, one per signing key of the origin.

    Django joins repeated headers with commas, which X-Matrix parameters contain
    too, so under ASGI the headers are read from the scope as sent.
    """
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict) and "headers" in scope:
        return [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"authorization"]
    value = request.META.get("HTTP_AUTHORIZATION")
    return [value] if isinstance(value, str) and value else []


def parse_body(request: HttpRequest) -> Any:
    data = request.body
    if not data:
        return None
    if len(data) > MAX_JSON_BODY:
        raise MatrixError(413, "M_TOO_LARGE", f"Body is larger than {MAX_JSON_BODY} bytes")
    try:
        return parse_json_body(data)
    except JsonError as exc:
        raise MatrixError(400, exc.errcode, exc.message) from None


def authenticate_request(request: HttpRequest, *, body: Any, keyring: Keyring | None = None) -> str:
    """The origin server of a signed federation request; :class:`MatrixError` 401/403 if not."""
    credentials = [h for h in authorization_headers(request) if h[:9].lower() == "x-matrix "]
    try:
        if not credentials:
            raise RequestAuthError("Missing X-Matrix Authorization header")
        origin = parse_x_matrix(credentials[0]).origin
        whitelist = settings.DAGMA.federation_domain_whitelist
        if whitelist is not None and origin not in whitelist:
            raise MatrixError(403, "M_FORBIDDEN", f"Federation with {origin[:255]} is not allowed")
        lookup = (keyring or get_keyring()).get_verify_key
        return verify_request(
            method=request.method or "GET",
            uri=raw_request_uri(request),
            content=body,
            authorization=credentials,
            our_server_name=get_server_name(),
            get_verify_key=lookup,
            now_ms=now_ms(),
        )
    except RequestAuthError as exc:
        raise MatrixError(401, exc.errcode, exc.reason) from None


View = Callable[..., Any]


def federation_endpoint(
    *, authenticated: bool, methods: tuple[str, ...] = ("GET",), transactions: bool = False
) -> Callable[[View], View]:
    """Wrap a view: method check, body, X-Matrix authentication, errors as Matrix JSON.

    ``transactions``: the view is ``PUT /send``, only queued per origin instead of held to
    ``rc_federation``'s delays (:meth:`embassy.ratelimit.FederationRateLimiter.transaction`).
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise MatrixError(405, "M_UNRECOGNIZED", "Method not allowed")
                body = parse_body(request)
                origin = authenticate_request(request, body=body) if authenticated else None
                if origin is not None:
                    note_requester(origin)  # the access line's requester
                    # The origin is up (it signed a request to us): what waits for it goes now,
                    # not after our back-off (issue #10: "reset ... when the peer contacts us";
                    # Synapse does the same for every authenticated request).
                    note_peer_contact(origin)
                    # rc_federation (embassy.ratelimit): each origin has its own budget, so a
                    # noisy server waits or gets 429 while the others are served.
                    limiter = get_federation_ratelimiter(settings.DAGMA.rc_federation)
                    held = limiter.transaction(origin) if transactions else limiter.limit(origin)
                    with held:
                        result = view(FederationRequest(request=request, origin=origin, body=body), **kwargs)
                else:
                    result = view(FederationRequest(request=request, origin=origin, body=body), **kwargs)
            except MatrixError as exc:
                return error_response(exc)
            if isinstance(result, HttpResponse):
                return result
            if isinstance(result, tuple):
                status, data = result
                return json_response(data, status=status)
            return json_response(result)

        return wrapper

    return decorate

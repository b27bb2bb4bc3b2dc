"""Where a request carries its access token (spec: client-server API "Using access tokens")."""

from __future__ import annotations

from django.http import HttpRequest

from dagcore.http.errors import MatrixError


def extract_access_token(request: HttpRequest) -> str | None:
    """``Authorization: Bearer`` (preferred) or the deprecated ``access_token`` query parameter."""
    header = request.META.get("HTTP_AUTHORIZATION")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Invalid Authorization header")
        return value.strip()
    token = request.GET.get("access_token")
    return token or None

"""Admin console pages."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dagcore.store import overview


def dashboard(request: HttpRequest) -> HttpResponse:
    """GET / — the server at a glance."""
    return render(request, "politburo/dashboard.html", {"overview": overview.get_server_overview()})


def health(request: HttpRequest) -> HttpResponse:
    """GET /health"""
    return HttpResponse(b"OK", content_type="text/plain")

"""Console pages of the console helper's areas: the dashboard and the health probe."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from dagcore.store import overview
from politburo.console.page import ConsoleRequest, console_page, render_page


@console_page(methods=("GET",))
def dashboard(request: ConsoleRequest) -> HttpResponse:
    """GET / — the server at a glance."""
    return render_page(
        request, "politburo/dashboard.html", {"overview": overview.get_server_overview()}, title="Dashboard"
    )


def health(request: HttpRequest) -> HttpResponse:
    """GET /health (no login: process supervisors and the test suite probe it)."""
    return HttpResponse(b"OK", content_type="text/plain")

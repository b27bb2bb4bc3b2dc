"""Console pages of the dashboard and the health probe."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from dagcore.actions import admin_users
from dagcore.actions.server_status import get_server_status
from politburo.console.page import ConsoleRequest, console_page, render_page


@console_page(methods=("GET",))
def dashboard(request: ConsoleRequest) -> HttpResponse:
    """GET / — the server at a glance (``dagcore.actions.server_status``)."""
    return render_page(
        request,
        "politburo/dashboard.html",
        {"status": get_server_status(), "users": admin_users.get_user_counts()},
        title="Dashboard",
    )


def health(request: HttpRequest) -> HttpResponse:
    """GET /health (no login: process supervisors and the test suite probe it)."""
    return HttpResponse(b"OK", content_type="text/plain")

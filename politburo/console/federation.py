"""The console's Federation page (issue 13): the destinations with their back-off and queue,
"retry now", and the federation tester for any server name (the service behind
``manage.py federation_test``)."""

from __future__ import annotations

from django.http import HttpResponse
from django.urls import reverse

from dagcore.actions import federation_admin as actions
from dagcore.doctor.federation_tester import run_federation_test
from dagcore.protocol.identifiers import split_server_name
from politburo.console.page import (
    ConsoleError,
    ConsoleRequest,
    console_actor,
    console_page,
    form_str,
    redirect_with_notice,
    render_page,
)

PAGE_SIZE = 50


def _page_number(request: ConsoleRequest) -> int:
    raw = request.GET.get("page", "1")
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 10**6:
        raise ConsoleError(400, "page must be a positive number.")
    return int(raw)


@console_page(methods=("GET",))
def federation(request: ConsoleRequest) -> HttpResponse:
    """GET /federation — every destination: last success, failing since, retry interval, next
    try, queued PDUs/EDUs and the oldest queued row; "retry now"; the tester form."""
    name = request.GET.get("q", "").strip()[:255] or None
    number = _page_number(request)
    order_by = request.GET.get("order", "destination")
    if order_by not in actions.ORDER_BY:
        raise ConsoleError(400, f"order must be one of {', '.join(actions.ORDER_BY)}.")
    page = actions.get_destinations(
        name_contains=name, order_by=order_by, backwards=order_by != "destination",
        offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE,
    )  # fmt: skip
    return render_page(
        request, "politburo/federation/index.html",
        {"page": page, "q": name or "", "order": order_by, "number": number,
         "has_next": page.next_token is not None, "orders": actions.ORDER_BY},
        title="Federation",
    )  # fmt: skip


@console_page(methods=("POST",))
def retry(request: ConsoleRequest) -> HttpResponse:
    """POST /federation/retry — end a destination's back-off and wake its sender."""
    destination = form_str(request, "destination", max_length=255, required=True)
    try:
        actions.do_reset_destination(destination=destination, actor=console_actor(request))
    except actions.UnknownDestination:
        raise ConsoleError(404, f"Unknown destination {destination}.") from None
    except actions.NothingToReset:
        return redirect_with_notice(
            reverse("federation"), f"{destination} is not backing off: nothing to retry."
        )
    return redirect_with_notice(reverse("federation"), f"Retrying {destination} now.")


@console_page(methods=("GET", "POST"))
def tester(request: ConsoleRequest) -> HttpResponse:
    """GET/POST /federation/test — the federation tester: each step's verdict for a server name.

    A POST (with the CSRF token) runs it: the tester makes outbound requests, which a link
    followed from elsewhere must not be able to trigger.
    """
    report = None
    error = ""
    server_name = ""
    if request.method == "POST":
        server_name = form_str(request, "server_name", max_length=255, required=True)
        if split_server_name(server_name) is None:
            # The form again with the reason (as the login form answers a wrong password).
            error = f"{server_name!r} is not a server name (e.g. example.org or example.org:8448)."
        else:
            report = run_federation_test(server_name)
    return render_page(
        request, "politburo/federation/test.html", {"report": report, "server_name": server_name, "error": error},
        title="Federation tester",
    )  # fmt: skip

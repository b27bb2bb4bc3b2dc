"""The console's Keys page: our signing keys beside what our key endpoint publishes, rotation,
and the "key compromised" flow (preview, then the same outputs as ``manage.py compromised``).
Both changes ask for the admin's password again."""

from __future__ import annotations

from dataclasses import asdict

from django.http import HttpResponse, HttpResponseBase
from django.urls import reverse

from dagcore.actions import signing_keys as actions
from dagcore.cli.when import parse_point_in_time
from dagcore.clock import now_ms
from politburo.console.page import (
    ConsoleError,
    ConsoleRequest,
    console_actor,
    console_page,
    form_str,
    redirect_with_notice,
    render_page,
    require_password_confirmation,
)


@console_page(methods=("GET",))
def keys(request: ConsoleRequest) -> HttpResponse:
    """GET /keys — our keys (current and old) beside what /_matrix/key/v2/server publishes."""
    overview = actions.key_overview(fetch=True, timeout=5.0)
    return render_page(request, "politburo/keys/index.html", {"overview": overview}, title="Signing keys")


@console_page(methods=("POST",))
def keys_rotate(request: ConsoleRequest) -> HttpResponseBase:
    """POST /keys/rotate — a new key signs from now on; the old one stays published as old."""
    require_password_confirmation(request)
    result = actions.do_rotate_signing_key(actor=console_actor(request))
    return redirect_with_notice(
        reverse("keys"),
        f"{result.new_key_id} signs from now on; {', '.join(result.expired)} published as old "
        f"(expired_ts {result.expired_ts}). Every process switches within seconds: reload this page "
        "to see the key endpoint publish it.",
    )


@console_page(methods=("POST",))
def keys_compromised(request: ConsoleRequest) -> HttpResponseBase:
    """POST /keys/compromised — ``step=preview``: what would happen (dry run);
    ``step=run``: expire the key at the time given, rotate, revoke every session."""
    raw_since = form_str(request, "since_ts") or form_str(request, "since", required=True, max_length=64)
    try:
        since = int(raw_since) if raw_since.isdigit() else parse_point_in_time(raw_since, now=now_ms())
    except ValueError as exc:
        raise ConsoleError(400, str(exc)) from None
    run = form_str(request, "step") == "run"
    if run:
        require_password_confirmation(request)
    try:
        report = actions.do_compromised(actor=console_actor(request), since_ts=since, dry_run=not run)
    except actions.KeyAdminError as exc:
        raise ConsoleError(400, str(exc)) from None
    # After a run this admin's session is gone too: the page is the last one before logging in.
    return render_page(
        request,
        "politburo/keys/compromised.html",
        {"report": asdict(report)},
        title="Signing key compromised",
    )

"""Console login, logout and the admin's own security settings (TOTP)."""

from __future__ import annotations

import hmac
import secrets

from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.views.decorators.csrf import csrf_exempt

from dagcore.actions import console_sessions
from politburo.console.page import (
    LOGIN_CSRF_COOKIE,
    ConsoleError,
    ConsoleRequest,
    clear_session_cookie,
    client_ip,
    console_actor,
    console_page,
    form_str,
    redirect_with_notice,
    render_page,
    require_password_confirmation,
    safe_next,
    session_secret,
    set_session_cookie,
)


def _login_form(request: HttpRequest, *, error: str = "", status: int = 200) -> HttpResponse:
    # Login CSRF (a page elsewhere logging the browser into the attacker's account): a
    # double-submit token, the cookie being readable only by pages of this origin.
    token = request.COOKIES.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render_page(
        request,
        "politburo/login.html",
        {
            "error": error,
            "login_csrf": token,
            "next": safe_next(request.GET.get("next") or request.POST.get("next")),
        },
        title="Log in",
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure()
    )
    return response


@csrf_exempt  # the login form carries its own double-submit token
def login(request: HttpRequest) -> HttpResponseBase:
    """GET /login — the form; POST /login — log a server admin in."""
    if request.method == "GET":
        if console_sessions.access_console_session(secret=session_secret(request)) is not None:
            return HttpResponseRedirect(safe_next(request.GET.get("next")))
        return _login_form(request)
    if request.method != "POST":
        return HttpResponse(status=405)
    cookie, field = request.COOKIES.get(LOGIN_CSRF_COOKIE, ""), request.POST.get("login_csrf", "")
    if not cookie or not hmac.compare_digest(cookie, field):
        return _login_form(request, error="The form expired; please try again.", status=403)
    try:
        new = console_sessions.check_console_login(
            user_identifier=request.POST.get("user", "")[:255],
            password=request.POST.get("password", "")[:1024],
            totp_code=request.POST.get("totp", "")[:16],
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
    except console_sessions.ConsoleLoginError as exc:
        # The form again with the reason (200: a refused login is an ordinary answer of the form).
        response = _login_form(request, error=exc.message, status=429 if exc.retry_after_ms else 200)
        if exc.retry_after_ms:
            response["Retry-After"] = str(max(1, exc.retry_after_ms // 1000))
        return response
    response = HttpResponseRedirect(safe_next(request.POST.get("next")))
    set_session_cookie(request, response, new.secret)
    response.delete_cookie(LOGIN_CSRF_COOKIE, samesite="Strict")
    return response


@console_page(methods=("POST",))
def logout(request: ConsoleRequest) -> HttpResponseBase:
    """POST /logout — end this console session."""
    console_sessions.do_console_logout(session=request.console_session, ip=client_ip(request))
    response = HttpResponseRedirect("/login")
    clear_session_cookie(response)
    return response


@console_page
def account(request: ConsoleRequest) -> HttpResponseBase:
    """GET /account — the admin's own sessions and second factor; POST: set up or remove TOTP."""
    if request.method == "POST":
        what = request.POST.get("action")
        if what == "totp_start":
            require_password_confirmation(request)
            console_sessions.do_start_totp_setup(user=request.admin)
            return redirect_with_notice(
                "/account", "Enter the secret into your authenticator app, then confirm."
            )
        if what == "totp_confirm":
            try:
                console_sessions.check_confirm_totp(
                    user=request.admin,
                    code=form_str(request, "code", max_length=16),
                    actor=console_actor(request),
                )
            except console_sessions.ConsoleLoginError as exc:
                raise ConsoleError(400, exc.message) from None
            return redirect_with_notice("/account", "Two-factor authentication is on.")
        if what == "totp_remove":
            require_password_confirmation(request)
            console_sessions.do_remove_totp(user=request.admin, actor=console_actor(request))
            return redirect_with_notice("/account", "Two-factor authentication is off.")
        raise ConsoleError(400, "Unknown action.")
    totp = console_sessions.get_totp_state(user=request.admin)
    uri = console_sessions.totp_provisioning_uri(totp=totp, user=request.admin) if totp else ""
    return render_page(
        request,
        "politburo/account.html",
        {"totp": totp, "totp_uri": uri, "sessions": console_sessions.list_sessions(user=request.admin)},
        title="Your account",
    )

"""The console's page machinery: sessions, CSRF, rendering, re-asked passwords.

A console page is a plain Django view wrapped by :func:`console_page`::

    @console_page
    def users(request: ConsoleRequest) -> HttpResponse:
        '''GET /users — the accounts, searchable.'''
        ...
        return render_page(request, "politburo/users/list.html", {"page": page}, title="Users")

    @console_page(methods=("POST",))
    def deactivate(request: ConsoleRequest, user_id: str) -> HttpResponse:
        require_password_confirmation(request)        # sensitive: the password again
        ...do_*(..., actor=console_actor(request))
        return redirect_with_notice(reverse("user", args=[user_id]), "Deactivated.")

What the decorator does:

* without a live console session: GET redirects to the login page (``?next=`` the page),
  other methods get 403;
* sets ``request.admin`` (the :class:`dagcore.models.User`), ``request.console_session`` and
  ``request.csrf_token``;
* refuses a POST whose ``csrf_token`` form field (or ``X-CSRF-Token`` header) is not the
  session's (403);
* answers 405 for methods not in ``methods`` (default GET and POST);
* percent-decodes the path parameters (routes match the raw path);
* turns a :class:`ConsoleError` or a :class:`dagcore.http.errors.MatrixError` raised by the
  view or an action into an error page with that status and message (so views may call the
  same actions as the admin API and let them refuse bad input).

The security headers (CSP without inline script, no framing, no caching) and the Host check
are added to every answer by ``politburo.middleware``.

Templates extend ``politburo/base.html`` (blocks ``title`` and ``content``); forms include
``politburo/_csrf.html`` and, for sensitive actions, ``politburo/_confirm_password.html``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, cast, overload
from urllib.parse import quote, unquote, urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from dagcore.actions import console_sessions
from dagcore.actions.audit import Actor
from dagcore.http.errors import MatrixError
from dagcore.models import ConsoleSession, User
from politburo.console.nav import nav_links

SESSION_COOKIE = "politburo_session"
LOGIN_CSRF_COOKIE = "politburo_login_csrf"
CSRF_FIELD = "csrf_token"
CONFIRM_PASSWORD_FIELD = "confirm_password"  # noqa: S105 - a form field name


class ConsoleRequest(HttpRequest):
    """What a :func:`console_page` view gets (for type checkers; at run time an HttpRequest)."""

    admin: User
    console_session: ConsoleSession
    csrf_token: str


class ConsoleError(Exception):
    """Refuse the request with an error page (``status``, ``message`` shown to the admin)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


PageView = Callable[..., HttpResponseBase]


def client_ip(request: HttpRequest) -> str:
    if settings.DAGMA_TRUST_X_FORWARDED_FOR and request.META.get("HTTP_X_FORWARDED_FOR"):
        return str(request.META["HTTP_X_FORWARDED_FOR"]).split(",")[0].strip()
    return str(request.META.get("REMOTE_ADDR") or "")


def console_actor(request: ConsoleRequest) -> Actor:
    """Who acts, for ``record_audit`` and the actions: the admin, via the console, from where."""
    return Actor(user_id=request.admin.user_id, via="console", ip=client_ip(request))


def session_secret(request: HttpRequest) -> str | None:
    return request.COOKIES.get(SESSION_COOKIE)


def set_session_cookie(request: HttpRequest, response: HttpResponseBase, secret: str) -> None:
    # No Max-Age: a browser session cookie; the server decides expiry (idle and absolute).
    response.set_cookie(
        SESSION_COOKIE, secret, httponly=True, samesite="Strict", secure=request.is_secure(), path="/"
    )


def clear_session_cookie(response: HttpResponseBase) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", samesite="Strict")


def login_url(next_path: str) -> str:
    return "/login?" + urlencode({"next": next_path})


def safe_next(value: str | None) -> str:
    """A local path to go back to after login (never another site: no ``//host``, no scheme,
    no whitespace or control character, which browsers drop and so could turn ``/\t/x`` into
    ``//x``)."""
    if (
        not value
        or len(value) > 2000
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value)
        or not url_has_allowed_host_and_scheme(value, allowed_hosts=None)
    ):
        return "/"
    return value


def _error_page(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return render_page(request, "politburo/error.html", {"message": message}, title="Error", status=status)


@overload
def console_page(view: PageView) -> PageView: ...
@overload
def console_page(*, methods: tuple[str, ...] = ...) -> Callable[[PageView], PageView]: ...
def console_page(
    view: PageView | None = None, *, methods: tuple[str, ...] = ("GET", "POST")
) -> PageView | Callable[[PageView], PageView]:
    """Wrap a console view: session login, CSRF on POST, errors as pages (see the module doc)."""

    def decorate(fn: PageView) -> PageView:
        @functools.wraps(fn)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            secret = session_secret(request)
            session = console_sessions.access_console_session(secret=secret)
            if session is None or secret is None:
                if request.method in ("GET", "HEAD"):
                    response: HttpResponseBase = HttpResponseRedirect(login_url(request.get_full_path()))
                else:
                    response = HttpResponse(b"Not logged in.\n", status=403, content_type="text/plain")
                if secret:
                    clear_session_cookie(response)
                return response
            req = cast(ConsoleRequest, request)
            req.admin = session.user
            req.console_session = session
            req.csrf_token = console_sessions.csrf_token_for(secret)
            if request.method not in methods and not (request.method == "HEAD" and "GET" in methods):
                return _error_page(request, 405, f"{request.method} is not allowed here.")
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                sent = request.POST.get(CSRF_FIELD) or request.META.get("HTTP_X_CSRF_TOKEN")
                if not console_sessions.check_csrf_token(secret=secret, token=sent):
                    return _error_page(
                        request, 403, "The form's CSRF token is missing or wrong; reload the page."
                    )
            try:
                # Routes match the raw path (a user ID's "@" and ":" arrive percent-encoded).
                kwargs = {
                    k: unquote(v, errors="strict") if isinstance(v, str) else v for k, v in kwargs.items()
                }
                return fn(req, *args, **kwargs)
            except UnicodeDecodeError:
                return _error_page(request, 400, "The address is not valid UTF-8.")
            except ConsoleError as exc:
                return _error_page(request, exc.status, exc.message)
            except MatrixError as exc:
                return _error_page(request, exc.status, exc.error)

        wrapper.csrf_exempt = True  # type: ignore[attr-defined]  # checked above, per session
        return wrapper

    return decorate(view) if view is not None else decorate


def render_page(
    request: HttpRequest,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    title: str,
    status: int = 200,
) -> HttpResponse:
    """Render a template extending ``politburo/base.html`` with what the base needs."""
    full = {
        "title": title,
        "admin": getattr(request, "admin", None),
        "csrf_token": getattr(request, "csrf_token", ""),
        "nav": nav_links(request) if getattr(request, "admin", None) else [],
        "notice": request.GET.get("notice", "")[:300],
        "server_name": settings.SERVER_NAME,
        **(context or {}),
    }
    return render(request, template, full, status=status)


def redirect_with_notice(path: str, notice: str) -> HttpResponseRedirect:
    """Back to ``path`` after a POST, showing ``notice`` (post/redirect/get)."""
    sep = "&" if "?" in path else "?"
    return HttpResponseRedirect(f"{path}{sep}notice={quote(notice)}")


def require_password_confirmation(request: ConsoleRequest) -> None:
    """For sensitive actions: the form's ``confirm_password`` must be the admin's password
    (failures rate-limited as logins); raises :class:`ConsoleError` (403) otherwise."""
    password = request.POST.get(CONFIRM_PASSWORD_FIELD, "")
    try:
        console_sessions.check_password_confirmation(
            user=request.admin, password=password, ip=client_ip(request)
        )
    except console_sessions.ConsoleLoginError as exc:
        raise ConsoleError(403, exc.message) from None


def form_str(request: HttpRequest, name: str, *, max_length: int = 1024, required: bool = False) -> str:
    """A trimmed form field (400 when required and empty, or too long)."""
    value = str(request.POST.get(name, "")).strip()
    if required and not value:
        raise ConsoleError(400, f"{name} is required.")
    if len(value) > max_length:
        raise ConsoleError(400, f"{name} is too long (at most {max_length} characters).")
    return value

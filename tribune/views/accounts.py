"""Registration, login, logout, tokens, password and deactivation.

Spec: client-server API "Client Authentication" and "Account registration and
management" (https://spec.matrix.org/v1.19/client-server-api/#client-authentication).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import URLPattern

from dagcore.actions import accounts as account_actions
from dagcore.actions.accounts import LoginSession
from dagcore.http.errors import MatrixError
from dagcore.ratelimit import check_rate_limit
from dagcore.server_keys import get_server_name
from dagcore.store import uia as uia_store
from tribune.http import RequestContext, client_route, endpoint, methods
from tribune.uia import (
    DUMMY,
    PASSWORD,
    REGISTRATION_TOKEN,
    failed_login_limit,
    login_identifier_user,
    record_failed_login,
    user_interactive_auth,
)

LOGIN_PASSWORD = "m.login.password"  # noqa: S105 - a login type
LOGIN_TOKEN = "m.login.token"  # noqa: S105 - a login type


# --------------------------------------------------------------------------- helpers


def _bool_param(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be a boolean")
    return value


def _session_answer(session: LoginSession) -> dict[str, Any]:
    out: dict[str, Any] = {
        "user_id": session.user_id,
        "access_token": session.access_token,
        "device_id": session.device_id,
        # Deprecated, but older clients still read it.
        "home_server": get_server_name(),
    }
    if session.refresh_token is not None:
        out["refresh_token"] = session.refresh_token
    if session.expires_in_ms is not None:
        out["expires_in_ms"] = session.expires_in_ms
    return out


def _seen(ctx: RequestContext) -> dict[str, Any]:
    return {"ip": ctx.client_ip, "user_agent": ctx.request.META.get("HTTP_USER_AGENT")}


def _registration_limit(ctx: RequestContext, *, peek: bool) -> None:
    """``rc_registration`` per client address: checked on every request, spent only by a
    registration that succeeds (the UIA round trips of one registration cost nothing)."""
    conf = settings.DAGMA.rc_registration
    result = check_rate_limit(
        "registration",
        ctx.client_ip,
        per_second=conf["per_second"],
        burst_count=conf["burst_count"],
        peek=peek,
    )
    if peek and not result.allowed:
        raise MatrixError(
            429, "M_LIMIT_EXCEEDED", "Too many registrations", retry_after_ms=result.retry_after_ms
        )


def _require_registration_enabled() -> None:
    if not settings.DAGMA.enable_registration:
        raise MatrixError(403, "M_FORBIDDEN", "Registration has been disabled")


def _login_limit(kind: str, key: str) -> None:
    conf = settings.DAGMA.rc_login[kind]
    result = check_rate_limit(
        f"login_{kind}", key, per_second=conf["per_second"], burst_count=conf["burst_count"]
    )
    if not result.allowed:
        raise MatrixError(
            429, "M_LIMIT_EXCEEDED", "Too many login attempts", retry_after_ms=result.retry_after_ms
        )


# --------------------------------------------------------------------------- registration


@endpoint(auth="none")
def register(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/register"""
    kind = ctx.query.get("kind", "user")
    if kind not in ("user", "guest"):
        raise MatrixError(400, "M_INVALID_PARAM", "kind must be user or guest")
    body = ctx.json_object()
    _registration_limit(ctx, peek=True)
    if kind == "guest":
        return _register_guest(ctx, body)
    _require_registration_enabled()
    # Spec: the username checks come before user-interactive auth.
    username = body.get("username")
    if username is not None:
        account_actions.check_new_localpart(username)
    password = body.get("password")
    if password is not None:
        account_actions.check_new_password(password)
    device_id, display_name = account_actions.check_device_params(
        device_id=body.get("device_id"), display_name=body.get("initial_device_display_name")
    )
    inhibit_login = _bool_param(body, "inhibit_login", False)
    want_refresh = _bool_param(body, "refresh_token", False)
    flows = [[REGISTRATION_TOKEN]] if settings.DAGMA.registration_requires_token else [[DUMMY]]

    with user_interactive_auth(ctx, flows=flows):
        if password is None:
            raise MatrixError(400, "M_MISSING_PARAM", "password is required")
        user = account_actions.do_register_user(
            localpart=username if username is not None else account_actions.generate_localpart(),
            password=password,
        )
        session = None
        if not inhibit_login:
            session = account_actions.do_start_login_session(
                user=user,
                device_id=device_id,
                initial_display_name=display_name,
                want_refresh_token=want_refresh,
                **_seen(ctx),
            )
    _registration_limit(ctx, peek=False)
    if session is None:
        return {"user_id": user.user_id, "home_server": get_server_name()}
    return _session_answer(session)


def _register_guest(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    """Spec: a guest registration ignores everything but ``initial_device_display_name``."""
    if not settings.DAGMA.allow_guest_access:
        raise MatrixError(403, "M_FORBIDDEN", "Guest access is disabled")
    display_name = account_actions.check_device_display_name(body.get("initial_device_display_name"))
    user = account_actions.do_register_user(
        localpart=account_actions.generate_localpart(), password=None, is_guest=True
    )
    session = account_actions.do_start_login_session(
        user=user, device_id=None, initial_display_name=display_name, want_refresh_token=False, **_seen(ctx)
    )
    _registration_limit(ctx, peek=False)
    return _session_answer(session)


@endpoint(auth="none")
def register_available(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/register/available"""
    _registration_limit(ctx, peek=True)
    _require_registration_enabled()
    username = ctx.query.get("username")
    if username is None:
        raise MatrixError(400, "M_MISSING_PARAM", "username is required")
    account_actions.check_new_localpart(username)
    return {"available": True}


@endpoint(auth="none")
def registration_token_validity(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v1/register/m.login.registration_token/validity"""
    # Spec: "Servers should be sure to rate limit this endpoint to avoid brute force attacks."
    conf = settings.DAGMA.rc_registration
    result = check_rate_limit(
        "registration_token_validity",
        ctx.client_ip,
        per_second=conf["per_second"],
        burst_count=conf["burst_count"],
    )
    if not result.allowed:
        raise MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=result.retry_after_ms)
    _require_registration_enabled()
    token = ctx.query.get("token")
    if token is None:
        raise MatrixError(400, "M_MISSING_PARAM", "token is required")
    return {"valid": len(token) <= 64 and uia_store.is_registration_token_valid(token)}


# --------------------------------------------------------------------------- login, logout, refresh


@endpoint(auth="none")
def login_flows(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/login"""
    # get_login_token: this server offers POST /login/get_token (spec v1.7).
    return {"flows": [{"type": LOGIN_PASSWORD}, {"type": LOGIN_TOKEN, "get_login_token": True}]}


@endpoint(auth="none")
def login(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/login"""
    body = ctx.json_object()
    login_type = body.get("type")
    if not isinstance(login_type, str):
        raise MatrixError(400, "M_MISSING_PARAM", "type is required")
    if login_type not in (LOGIN_PASSWORD, LOGIN_TOKEN):
        raise MatrixError(400, "M_UNKNOWN", f"Unknown login type {login_type}")
    _login_limit("address", ctx.client_ip)
    if login_type == LOGIN_TOKEN:
        return _login_with_token(ctx, body)
    named = login_identifier_user(body)
    if named is None:
        raise MatrixError(400, "M_MISSING_PARAM", "identifier is required")
    password = body.get("password")
    if not isinstance(password, str):
        raise MatrixError(400, "M_MISSING_PARAM", "password is required")
    device_id, display_name = account_actions.check_device_params(
        device_id=body.get("device_id"), display_name=body.get("initial_device_display_name")
    )
    want_refresh = _bool_param(body, "refresh_token", False)

    user = account_actions.get_user_for_login(named)
    # Limits are per account, whether or not it exists, so they reveal nothing.
    account_key = user.user_id if user is not None else named.lower()
    _login_limit("account", account_key)
    failed_login_limit(account_key)
    if user is None or not account_actions.check_user_password(user=user, password=password):
        record_failed_login(account_key)
        raise MatrixError(403, "M_FORBIDDEN", "Invalid username or password")
    session = account_actions.do_start_login_session(
        user=user,
        device_id=device_id,
        initial_display_name=display_name,
        want_refresh_token=want_refresh,
        **_seen(ctx),
    )
    return _session_answer(session)


def _login_with_token(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    """``m.login.token``: a single-use token from ``POST /login/get_token``."""
    device_id, display_name = account_actions.check_device_params(
        device_id=body.get("device_id"), display_name=body.get("initial_device_display_name")
    )
    want_refresh = _bool_param(body, "refresh_token", False)
    user = account_actions.check_login_token(token=body.get("token"))
    session = account_actions.do_start_login_session(
        user=user,
        device_id=device_id,
        initial_display_name=display_name,
        want_refresh_token=want_refresh,
        **_seen(ctx),
    )
    return _session_answer(session)


@endpoint()
def get_login_token(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v1/login/get_token"""
    user = ctx.require_user()
    _login_limit("account", user.user_id)
    # A login token is a new session for this account: the password is asked again.
    with user_interactive_auth(ctx, flows=[[PASSWORD]]):
        token, lifetime = account_actions.do_create_login_token(user=user)
    return {"login_token": token, "expires_in_ms": lifetime}


@endpoint(allow_guest=True, allow_locked=True)
def logout(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/logout"""
    account_actions.do_logout(user=ctx.require_user(), device=ctx.device, token_id=ctx.token_id)
    return {}


@endpoint(allow_guest=True, allow_locked=True)
def logout_all(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/logout/all"""
    account_actions.do_logout_all(user=ctx.require_user())
    return {}


@endpoint(auth="none")
def refresh(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/refresh"""
    token = ctx.json_object().get("refresh_token")
    if not isinstance(token, str) or not token:
        raise MatrixError(400, "M_MISSING_PARAM", "refresh_token is required")
    session = account_actions.do_refresh_session(refresh_token=token)
    out: dict[str, Any] = {"access_token": session.access_token, "refresh_token": session.refresh_token}
    if session.expires_in_ms is not None:
        out["expires_in_ms"] = session.expires_in_ms
    return out


# --------------------------------------------------------------------------- account


@endpoint(allow_guest=True)
def whoami(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/account/whoami"""
    user = ctx.require_user()
    out: dict[str, Any] = {"user_id": user.user_id, "is_guest": user.is_guest}
    if ctx.device_id is not None:
        out["device_id"] = ctx.device_id
    return out


@endpoint()
def change_password(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/account/password"""
    user = ctx.require_user()
    body = ctx.json_object()
    new_password = body.get("new_password")
    if new_password is None:
        raise MatrixError(400, "M_MISSING_PARAM", "new_password is required")
    account_actions.check_new_password(new_password)
    logout_devices = _bool_param(body, "logout_devices", True)
    with user_interactive_auth(ctx, flows=[[PASSWORD]]):
        account_actions.do_change_password(
            user=user, new_password=new_password, logout_devices=logout_devices, keep_device=ctx.device,
            keep_token_id=ctx.token_id,
        )  # fmt: skip
    return {}


@endpoint()
def deactivate(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/account/deactivate"""
    user = ctx.require_user()
    body = ctx.json_object()
    _bool_param(body, "erase", False)
    id_server = body.get("id_server")
    if id_server is not None and not isinstance(id_server, str):
        raise MatrixError(400, "M_INVALID_PARAM", "id_server must be a string")
    with user_interactive_auth(ctx, flows=[[PASSWORD]]):
        account_actions.do_deactivate_user(user=user)
    # No third-party identifiers are ever bound through this server.
    return {"id_server_unbind_result": "no-support"}


@endpoint()
def threepids(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v3/account/3pid — this server binds no third-party identifiers."""
    return {"threepids": []}


@endpoint(auth="none")
def request_token_refused(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/{register,account/password}/{email,msisdn}/requestToken

    This server binds no third-party identifiers (``m.3pid_changes`` is off), so no address
    can register or reset a password: 403 ``M_THREEPID_DENIED``, the spec's answer for an
    address the server does not permit. Nothing is sent or stored."""
    raise MatrixError(403, "M_THREEPID_DENIED", "This server does not use email addresses or phone numbers")


@endpoint(auth="none")
def request_3pid_token_email(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/account/3pid/email/requestToken (spec v1.13, MSC4178)."""
    raise MatrixError(
        400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "This server does not support adding email addresses"
    )


@endpoint(auth="none")
def request_3pid_token_msisdn(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/client/v3/account/3pid/msisdn/requestToken (spec v1.13, MSC4178)."""
    raise MatrixError(
        400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "This server does not support adding phone numbers"
    )


routes: list[URLPattern] = [
    client_route("register", methods(POST=register)),
    client_route("register/email/requestToken", methods(POST=request_token_refused)),
    client_route("register/msisdn/requestToken", methods(POST=request_token_refused)),
    client_route("account/password/email/requestToken", methods(POST=request_token_refused)),
    client_route("account/password/msisdn/requestToken", methods(POST=request_token_refused)),
    client_route("account/3pid/email/requestToken", methods(POST=request_3pid_token_email)),
    client_route("account/3pid/msisdn/requestToken", methods(POST=request_3pid_token_msisdn)),
    client_route("register/available", methods(GET=register_available)),
    client_route(
        "register/m.login.registration_token/validity",
        methods(GET=registration_token_validity),
        versions=("v1",),
    ),
    client_route("login", methods(GET=login_flows, POST=login)),
    client_route("login/get_token", methods(POST=get_login_token), versions=("v1",)),
    client_route("logout", methods(POST=logout)),
    client_route("logout/all", methods(POST=logout_all)),
    client_route("refresh", methods(POST=refresh), versions=("v3", "v1")),
    client_route("account/whoami", methods(GET=whoami)),
    client_route("account/password", methods(POST=change_password)),
    client_route("account/deactivate", methods(POST=deactivate)),
    client_route("account/3pid", methods(GET=threepids)),
]

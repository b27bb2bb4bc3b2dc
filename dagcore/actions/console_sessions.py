"""Politburo's browser sessions: a server admin logs in with their account password (the same
argon2 check as ``/login``) and, when set up, a TOTP code (RFC 6238).

* The cookie carries a random secret; the database keeps only its SHA-256 digest.
* A session ends on logout, after ``admin_session_idle_timeout`` without a request (default
  30 min), :data:`ABSOLUTE_LIFETIME_MS` after login, and as soon as its admin changes password,
  is deactivated, locked or is no longer an admin (checked on every request, so it holds
  whichever process or API made the change).
* Failed logins are rate-limited per address and per account; only failures count.
* The CSRF token of a session is an HMAC of its secret: nothing more to store, and it cannot
  be guessed from the digest.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import pyotp
from django.conf import settings

from dagcore.actions import accounts as account_actions
from dagcore.actions.audit import Actor, record_audit
from dagcore.clock import duration_ms, now_ms
from dagcore.models import AdminTotp, ConsoleSession, User
from dagcore.passwords import check_password, hash_password
from dagcore.ratelimit import check_rate_limit
from dagcore.store import console as store

ABSOLUTE_LIFETIME_MS = 8 * 3_600_000
DEFAULT_IDLE_TIMEOUT_MS = 30 * 60_000
#: Failed console logins: a burst, then one more try per interval (per address / per account).
FAILED_LOGINS_PER_IP = (1 / 30, 10.0)
FAILED_LOGINS_PER_ACCOUNT = (1 / 60, 5.0)
TOTP_ISSUER = "Dagma Politburo"


class ConsoleLoginError(Exception):
    """A refused console login or confirmation, with the message shown on the form."""

    def __init__(self, message: str, *, retry_after_ms: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True)
class NewSession:
    session: ConsoleSession
    #: For the cookie only; never stored.
    secret: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _password_stamp(user: User) -> str:
    return _digest("password:" + (user.password_hash or ""))


def idle_timeout_ms() -> int:
    value = getattr(settings.DAGMA, "admin_session_idle_timeout", None)
    return (duration_ms(value) if value is not None else None) or DEFAULT_IDLE_TIMEOUT_MS


def csrf_token_for(secret: str) -> str:
    """The session's CSRF token (an HMAC of its secret under ``SECRET_KEY``)."""
    return hmac.new(settings.SECRET_KEY.encode(), b"csrf:" + secret.encode(), hashlib.sha256).hexdigest()


def check_csrf_token(*, secret: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token_for(secret), str(token))


# --------------------------------------------------------------------------- login


def _rate_limited(ip: str, account: str) -> int:
    """Milliseconds to wait when the address or the account has no failed attempt left (0: go)."""
    for key, (rate, burst) in (
        (f"ip:{ip}", FAILED_LOGINS_PER_IP),
        (f"account:{account}", FAILED_LOGINS_PER_ACCOUNT),
    ):
        result = check_rate_limit("console_login", key, per_second=rate, burst_count=burst, peek=True)
        if not result.allowed:
            return result.retry_after_ms
    return 0


def _count_failure(ip: str, account: str) -> None:
    for key, (rate, burst) in (
        (f"ip:{ip}", FAILED_LOGINS_PER_IP),
        (f"account:{account}", FAILED_LOGINS_PER_ACCOUNT),
    ):
        check_rate_limit("console_login", key, per_second=rate, burst_count=burst)


@functools.cache
def _timing_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _totp_step(totp: AdminTotp, code: str) -> int | None:
    """The time step ``code`` is valid for (this one or the adjacent ones), or None."""
    code = code.strip().replace(" ", "")
    if not code.isascii() or not code.isdigit() or len(code) != 6:
        return None
    otp = pyotp.TOTP(totp.secret)
    now_s = now_ms() // 1000
    for drift in (0, -1, 1):  # one step either way: clocks and typing take time
        at = now_s + drift * otp.interval
        if hmac.compare_digest(otp.at(at), code):
            return at // otp.interval
    return None


def check_console_login(
    *, user_identifier: str, password: str, totp_code: str, ip: str, user_agent: str
) -> NewSession:
    """Log a server admin in; :class:`ConsoleLoginError` (one message for every wrong input,
    so the form does not tell which accounts exist or are admins)."""
    account = user_identifier.strip().lower()[:255]
    wait = _rate_limited(ip, account)
    if wait:
        raise ConsoleLoginError("Too many failed attempts; try again later.", retry_after_ms=wait)
    user = account_actions.get_user_for_login(user_identifier.strip()) if account else None
    if user is None or not user.is_admin or user.locked:
        # The same argon2 work as a real check: the answer's timing does not tell which
        # accounts exist or are admins.
        check_password(password, _timing_hash())
        ok = False
    else:
        ok = account_actions.check_user_password(user=user, password=password)
    if not ok or user is None:
        _count_failure(ip, account)
        raise ConsoleLoginError("Wrong user name or password, or not a server admin.")
    totp = store.get_totp(user)
    if totp is not None and totp.confirmed:
        step = _totp_step(totp, totp_code) if totp_code else None
        if step is None or not store.claim_totp_step(totp, step=step):
            _count_failure(ip, account)
            raise ConsoleLoginError("Wrong or reused authentication code.")
    secret = secrets.token_urlsafe(32)
    session = store.insert_console_session(
        secret_hash=_digest(secret), user=user, now=now_ms(), password_stamp=_password_stamp(user),
        ip=ip, user_agent=user_agent,
    )  # fmt: skip
    record_audit(actor=Actor(user.user_id, "console", ip), action="console_login", target=user.user_id)
    return NewSession(session=session, secret=secret)


def access_console_session(*, secret: str | None) -> ConsoleSession | None:
    """The live session of this cookie secret (its idle clock restarted), else None (and an
    expired or invalidated session is deleted)."""
    if not secret or len(secret) > 128:
        return None
    session = store.get_console_session(_digest(secret))
    if session is None:
        return None
    user, now = session.user, now_ms()
    alive = (
        user.is_admin
        and not user.deactivated
        and not user.locked
        and session.password_stamp == _password_stamp(user)
        and now - session.last_seen_ts <= idle_timeout_ms()
        and now - session.created_ts <= ABSOLUTE_LIFETIME_MS
    )
    if not alive:
        store.delete_console_session(session.id)
        return None
    store.touch_console_session(session, now=now)
    return session


def do_console_logout(*, session: ConsoleSession, ip: str) -> None:
    store.delete_console_session(session.id)
    record_audit(
        actor=Actor(session.user.user_id, "console", ip), action="console_logout", target=session.user.user_id
    )


def do_end_console_sessions(*, user: User) -> int:
    """End every console session of ``user`` (an admin's loss of rights, a forced log-out)."""
    return store.delete_console_sessions_of(user)


def check_password_confirmation(*, user: User, password: str, ip: str) -> None:
    """The admin typed their password again before a sensitive action (rate-limited as logins)."""
    account = user.user_id.lower()
    wait = _rate_limited(ip, account)
    if wait:
        raise ConsoleLoginError("Too many failed attempts; try again later.", retry_after_ms=wait)
    if not password or not account_actions.check_user_password(user=user, password=password):
        _count_failure(ip, account)
        raise ConsoleLoginError("The password you confirmed with is wrong.")


# --------------------------------------------------------------------------- TOTP set-up


def get_totp_state(*, user: User) -> AdminTotp | None:
    return store.get_totp(user)


def do_start_totp_setup(*, user: User) -> tuple[AdminTotp, str]:
    """A fresh secret to enter into an authenticator app; (the row, its ``otpauth://`` URI).
    Not in force until confirmed with a code."""
    totp = store.replace_totp(user=user, secret=pyotp.random_base32(), now=now_ms())
    uri = pyotp.TOTP(totp.secret).provisioning_uri(name=user.user_id, issuer_name=TOTP_ISSUER)
    return totp, uri


def check_confirm_totp(*, user: User, code: str, actor: Actor) -> None:
    totp = store.get_totp(user)
    if totp is None:
        raise ConsoleLoginError("Start the set-up first.")
    step = _totp_step(totp, code)
    if step is None:
        raise ConsoleLoginError("Wrong authentication code.")
    store.confirm_totp(totp, step=step)
    record_audit(actor=actor, action="totp_enable", target=user.user_id)


def do_remove_totp(*, user: User, actor: Actor) -> None:
    removed = store.delete_totp(user)
    record_audit(actor=actor, action="totp_disable", target=user.user_id, counts={"removed": removed})


def totp_provisioning_uri(*, totp: AdminTotp, user: User) -> str:
    return pyotp.TOTP(totp.secret).provisioning_uri(name=user.user_id, issuer_name=TOTP_ISSUER)


def list_sessions(*, user: User) -> list[ConsoleSession]:
    return store.list_console_sessions(user)

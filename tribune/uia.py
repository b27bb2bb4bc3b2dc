"""User-Interactive Authentication (UIA) for Tribune's views.

Spec: https://spec.matrix.org/v1.19/client-server-api/#user-interactive-authentication-api

A protected view wraps its change in :func:`user_interactive_auth`::

    with user_interactive_auth(ctx, flows=[["m.login.password"]]):
        do_delete_devices(...)

Until one flow's stages are all completed, the block is not entered and the
client gets the spec's 401 ``{flows, params, session, completed}`` (plus
``errcode``/``error`` when a stage just failed). Sessions are rows in the
database, so the stages of one session may reach different Tribune processes.
A session belongs to the operation (method and endpoint), the user and the
bound request parameters it started with; it is spent inside the transaction
of the change it authorised, so it authorises exactly one change — and if the
change fails, the client may retry with the same, still-complete, session.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.conf import settings

from dagcore.actions.accounts import check_user_password
from dagcore.http.errors import MatrixError
from dagcore.models import UiaSession
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.ratelimit import check_rate_limit
from dagcore.store import transaction
from dagcore.store import uia as uia_store
from tribune.http import RequestContext

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"  # noqa: S105 - a stage name
REGISTRATION_TOKEN = "m.login.registration_token"  # noqa: S105 - a stage name

Flows = Sequence[Sequence[str]]
#: A stage checker: returns what the stage established (kept on the session),
#: or raises :class:`StageFailed`.
StageChecker = Callable[[RequestContext, dict[str, Any]], dict[str, Any]]


class StageFailed(Exception):
    def __init__(self, errcode: str, error: str, *, status: int = 401, **extra: Any) -> None:
        super().__init__(error)
        self.errcode = errcode
        self.error = error
        self.status = status
        self.extra = extra


class AuthRequired(MatrixError):
    """The spec's 401 UIA answer; ``errcode`` only when a stage was just attempted and failed."""

    def __init__(self, *, flows: Flows, params: dict[str, Any], session: UiaSession, errcode: str | None = None,
                 error: str | None = None, status: int = 401, **extra: Any) -> None:  # fmt: skip
        super().__init__(status, errcode or "", error or "Additional authentication is required")
        self.body: dict[str, Any] = {
            "flows": [{"stages": list(flow)} for flow in flows],
            "params": params,
            "session": session.session_id,
        }
        if session.completed:
            self.body["completed"] = list(session.completed)
        if errcode is not None:
            self.body["errcode"] = errcode
            self.body["error"] = error or ""
        self.body.update(extra)

    def to_json(self) -> dict[str, Any]:
        return self.body


# --------------------------------------------------------------------------- stages


def _dummy(ctx: RequestContext, auth: dict[str, Any]) -> dict[str, Any]:
    return {}


def login_identifier_user(body: dict[str, Any]) -> str | None:
    """The ``user`` of an ``m.id.user`` identifier, or of the deprecated top-level ``user``.

    Raises 400 for an identifier of another type or a malformed one; None when
    the body names no user at all.
    """
    identifier = body.get("identifier")
    if identifier is not None:
        if not isinstance(identifier, dict) or not isinstance(identifier.get("type"), str):
            raise MatrixError(400, "M_INVALID_PARAM", "identifier must be an object with a type")
        if identifier["type"] != "m.id.user":
            raise MatrixError(400, "M_UNKNOWN", f"Unsupported identifier type {identifier['type']}")
        user = identifier.get("user")
        if not isinstance(user, str) or not user:
            raise MatrixError(400, "M_INVALID_PARAM", "identifier.user must be a non-empty string")
        return user
    user = body.get("user")
    if user is None:
        return None
    if not isinstance(user, str) or not user:
        raise MatrixError(400, "M_INVALID_PARAM", "user must be a non-empty string")
    return user


def failed_login_limit(key: str) -> None:
    """Refuse with 429 while ``key`` (an account) has used up its failed attempts (``rc_login.failed_attempts``)."""
    conf = settings.DAGMA.rc_login["failed_attempts"]
    result = check_rate_limit(
        "login_failed", key, per_second=conf["per_second"], burst_count=conf["burst_count"], peek=True
    )
    if not result.allowed:
        raise MatrixError(
            429, "M_LIMIT_EXCEEDED", "Too many failed attempts", retry_after_ms=result.retry_after_ms
        )


def record_failed_login(key: str) -> None:
    conf = settings.DAGMA.rc_login["failed_attempts"]
    check_rate_limit("login_failed", key, per_second=conf["per_second"], burst_count=conf["burst_count"])


def _password(ctx: RequestContext, auth: dict[str, Any]) -> dict[str, Any]:
    """``m.login.password`` proves the requester is the account's owner again."""
    user = ctx.require_user()
    try:
        named = login_identifier_user(auth)
    except MatrixError as exc:
        raise StageFailed(exc.errcode, exc.error) from None
    if named is not None and named not in (user.user_id, user.localpart):
        raise StageFailed("M_FORBIDDEN", "The user in the auth data is not the requesting user")
    password = auth.get("password")
    if not isinstance(password, str):
        raise StageFailed("M_MISSING_PARAM", "password is required")
    try:
        failed_login_limit(user.user_id)
    except MatrixError as exc:
        raise StageFailed(exc.errcode, exc.error, status=429, **exc.extra) from None
    if not check_user_password(user=user, password=password):
        record_failed_login(user.user_id)
        raise StageFailed("M_FORBIDDEN", "Invalid password")
    return {}


def _registration_token(ctx: RequestContext, auth: dict[str, Any]) -> dict[str, Any]:
    """``m.login.registration_token``: a valid token; one of its uses is held for this session."""
    token = auth.get("token")
    if not isinstance(token, str) or not token:
        raise StageFailed("M_MISSING_PARAM", "token is required")
    if len(token) > 64 or not uia_store.reserve_registration_token(token):
        raise StageFailed("M_FORBIDDEN", "Invalid registration token")
    return {"registration_token": token}


STAGES: dict[str, StageChecker] = {
    DUMMY: _dummy,
    PASSWORD: _password,
    REGISTRATION_TOKEN: _registration_token,
}


# --------------------------------------------------------------------------- the session


_VERSION_RE = re.compile(r"^/_matrix/client/(?:r0|v3)/")


def _operation(ctx: RequestContext) -> str:
    """The method and endpoint, with r0 and v3 counted as the same endpoint."""
    path = _VERSION_RE.sub("/_matrix/client/v3/", ctx.request.path)
    return f"{ctx.request.method} {path}"[:512]


def _binding(bound: Any) -> str:
    if bound is None:
        return ""
    return hashlib.sha256(encode_canonical_json(bound)).hexdigest()


def _is_complete(completed: Sequence[str], flows: Flows) -> bool:
    return any(list(completed[: len(flow)]) == list(flow) for flow in flows)


def _progress(ctx: RequestContext, *, flows: Flows, params: dict[str, Any], bound: Any) -> UiaSession:
    """Advance the session by the stage in ``auth``; return it once a flow is complete."""
    body = ctx.json_object()
    user_id = ctx.user.user_id if ctx.user is not None else None
    auth = body.get("auth")
    if auth is not None and not isinstance(auth, dict):
        raise MatrixError(400, "M_BAD_JSON", "auth must be an object")
    auth_dict: dict[str, Any] = auth or {}
    session_id = auth_dict.get("session")
    if session_id is None:
        # First request: start a session. A client may complete a stage in this very
        # request (e.g. m.login.dummy), so carry on with it if auth holds a stage.
        session = uia_store.create_session(
            operation=_operation(ctx), user_id=user_id, binding=_binding(bound)
        )
        if not auth:
            raise AuthRequired(flows=flows, params=params, session=session)
        session_id = session.session_id
    if not isinstance(session_id, str):
        raise MatrixError(400, "M_BAD_JSON", "auth.session must be a string")
    stage = auth_dict.get("type")
    if stage is not None and not isinstance(stage, str):
        raise MatrixError(400, "M_BAD_JSON", "auth.type must be a string")
    with transaction.atomic():
        locked = uia_store.get_session_for_update(session_id)
        if locked is None:
            raise MatrixError(400, "M_UNKNOWN", "Unknown or expired authentication session")
        if (
            locked.operation != _operation(ctx)
            or locked.user_id != user_id
            or locked.binding != _binding(bound)
        ):
            raise MatrixError(
                403, "M_FORBIDDEN", "The requested operation has changed during the authentication session"
            )
        if stage is not None and stage not in locked.completed:
            done = list(locked.completed)
            if not any(list(flow[: len(done) + 1]) == [*done, stage] for flow in flows):
                unknown = not any(stage in flow for flow in flows)
                raise AuthRequired(
                    flows=flows, params=params, session=locked,
                    errcode="M_UNRECOGNIZED" if unknown else "M_FORBIDDEN",
                    error=f"{stage} is not the next stage of any flow",
                )  # fmt: skip
            try:
                data = STAGES[stage](ctx, auth_dict)
            except StageFailed as exc:
                raise AuthRequired(
                    flows=flows, params=params, session=locked, errcode=exc.errcode, error=exc.error,
                    status=exc.status, **exc.extra,
                ) from None  # fmt: skip
            uia_store.save_session_progress(locked, stage=stage, data=data)
    if not _is_complete(locked.completed, flows):
        raise AuthRequired(flows=flows, params=params, session=locked)
    return locked


@contextmanager
def user_interactive_auth(
    ctx: RequestContext, *, flows: Flows, params: dict[str, Any] | None = None, bound: Any = None
) -> Iterator[UiaSession]:
    """Enter the block only once the request completed a flow; the block runs in the
    transaction that spends the session.

    ``bound``: request parameters (JSON-able) that must stay the same for the whole
    session — e.g. the devices being deleted — so a completed session cannot be
    turned into a different change.
    """
    session = _progress(ctx, flows=flows, params=params or {}, bound=bound)
    with transaction.atomic():
        if not uia_store.claim_session(session):
            # Another request spent it first: start over.
            fresh = uia_store.create_session(
                operation=_operation(ctx), user_id=session.user_id, binding=session.binding
            )
            raise AuthRequired(flows=flows, params=params or {}, session=fresh)
        yield session

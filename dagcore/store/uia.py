"""User-interactive auth sessions and registration tokens (``dagcore.models.uia``).

Every change that several processes could race on (a stage completing, a
session being spent, a token use being reserved) is one conditional UPDATE or
DELETE, so exactly one request wins.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.db import transaction
from django.db.models import F, Q

from dagcore.clock import now_ms
from dagcore.models import RegistrationToken, UiaSession

#: How long a session may take from its first request to its last stage. The
#: spec sets no figure; an hour is ample for dummy, password and token stages.
UIA_SESSION_LIFETIME_MS = 60 * 60 * 1000

#: Spec: registration tokens are 1-64 characters of ``[A-Za-z0-9._~-]``.
REGISTRATION_TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"  # noqa: S105


# --------------------------------------------------------------------------- sessions


def create_session(*, operation: str, user_id: str | None, binding: str) -> UiaSession:
    now = now_ms()
    return UiaSession.objects.create(
        session_id=secrets.token_urlsafe(24),
        operation=operation,
        user_id=user_id,
        binding=binding,
        completed=[],
        data={},
        created_ts=now,
        expires_ts=now + UIA_SESSION_LIFETIME_MS,
    )


def get_session(session_id: str) -> UiaSession | None:
    """The session, unless it is unknown or expired."""
    return UiaSession.objects.filter(session_id=session_id, expires_ts__gt=now_ms()).first()


def get_session_for_update(session_id: str) -> UiaSession | None:
    """The live session, row-locked until the caller's transaction ends (stages of one
    session then complete one after another even across processes)."""
    return (
        UiaSession.objects.select_for_update().filter(session_id=session_id, expires_ts__gt=now_ms()).first()
    )


def save_session_progress(session: UiaSession, *, stage: str, data: dict[str, Any] | None = None) -> None:
    """Record a completed stage (and what it established) on a session read for update."""
    if stage not in session.completed:
        session.completed = [*session.completed, stage]
    if data:
        session.data = {**session.data, **data}
    session.save(update_fields=["completed", "data"])


def claim_session(session: UiaSession) -> bool:
    """Spend a fully-authenticated session: True for exactly one caller.

    Called inside the transaction of the operation it authorises, so if the
    operation fails the session is still there for the client to retry with.
    A registration token reserved by the session turns from pending to completed.
    """
    deleted, _ = UiaSession.objects.filter(id=session.id).delete()
    if deleted != 1:
        return False
    token = session.data.get("registration_token")
    if isinstance(token, str):
        RegistrationToken.objects.filter(token=token).update(
            pending=F("pending") - 1, completed=F("completed") + 1
        )
    return True


def delete_expired_sessions() -> int:
    """Drop sessions past their lifetime; their reserved token uses are released."""
    now = now_ms()
    with transaction.atomic():
        expired = list(
            UiaSession.objects.select_for_update(skip_locked=True)
            .filter(expires_ts__lte=now)
            .values_list("id", "data")
        )
        if not expired:
            return 0
        released: dict[str, int] = {}
        for _id, data in expired:
            token = (data or {}).get("registration_token")
            if isinstance(token, str):
                released[token] = released.get(token, 0) + 1
        for token, count in released.items():
            RegistrationToken.objects.filter(token=token).update(pending=F("pending") - count)
        deleted, _ = UiaSession.objects.filter(id__in=[i for i, _ in expired]).delete()
    return deleted


# --------------------------------------------------------------------------- registration tokens


def _usable() -> Q:
    """Tokens that may still be used: not expired, and a use left once pending ones count."""
    return (Q(expiry_time__isnull=True) | Q(expiry_time__gt=now_ms())) & (
        Q(uses_allowed__isnull=True) | Q(uses_allowed__gt=F("pending") + F("completed"))
    )


def create_registration_token(
    *,
    token: str | None = None,
    uses_allowed: int | None = None,
    expiry_time: int | None = None,
    length: int = 16,
) -> RegistrationToken:
    if token is None:
        token = "".join(secrets.choice(REGISTRATION_TOKEN_ALPHABET[:62]) for _ in range(length))
    return RegistrationToken.objects.create(token=token, uses_allowed=uses_allowed, expiry_time=expiry_time)


def get_registration_token(token: str) -> RegistrationToken | None:
    return RegistrationToken.objects.filter(token=token).first()


def is_registration_token_valid(token: str) -> bool:
    return RegistrationToken.objects.filter(_usable(), token=token).exists()


def reserve_registration_token(token: str) -> bool:
    """Hold one use of ``token`` for a registration in progress; False if none is left."""
    return RegistrationToken.objects.filter(_usable(), token=token).update(pending=F("pending") + 1) == 1


def delete_registration_token(token: str) -> bool:
    deleted, _ = RegistrationToken.objects.filter(token=token).delete()
    return deleted == 1

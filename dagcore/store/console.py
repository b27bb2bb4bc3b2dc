"""Console sessions, admins' TOTP secrets and rate-limit overrides (``dagcore.models.console``)."""

from __future__ import annotations

from dagcore.models import AdminTotp, ConsoleSession, RatelimitOverride, User

# --------------------------------------------------------------------------- sessions


def insert_console_session(
    *, secret_hash: str, user: User, now: int, password_stamp: str, ip: str, user_agent: str
) -> ConsoleSession:
    return ConsoleSession.objects.create(
        secret_hash=secret_hash,
        user=user,
        created_ts=now,
        last_seen_ts=now,
        password_stamp=password_stamp,
        ip=ip[:64],
        user_agent=user_agent[:512],
    )


def get_console_session(secret_hash: str) -> ConsoleSession | None:
    """The session with its user (one query)."""
    return ConsoleSession.objects.select_related("user").filter(secret_hash=secret_hash).first()


def touch_console_session(session: ConsoleSession, *, now: int) -> None:
    ConsoleSession.objects.filter(id=session.id).update(last_seen_ts=now)
    session.last_seen_ts = now


def delete_console_session(session_id: int) -> None:
    ConsoleSession.objects.filter(id=session_id).delete()


def delete_console_sessions_of(user: User) -> int:
    return int(ConsoleSession.objects.filter(user=user).delete()[0])


def delete_console_sessions_before(*, last_seen_before: int, created_before: int) -> int:
    """Sessions idle or old enough to be expired anyway (a housekeeping sweep)."""
    idle = ConsoleSession.objects.filter(last_seen_ts__lt=last_seen_before).delete()[0]
    old = ConsoleSession.objects.filter(created_ts__lt=created_before).delete()[0]
    return int(idle + old)


def list_console_sessions(user: User) -> list[ConsoleSession]:
    return list(ConsoleSession.objects.filter(user=user).order_by("-last_seen_ts"))


# --------------------------------------------------------------------------- TOTP


def get_totp(user: User) -> AdminTotp | None:
    return AdminTotp.objects.select_related("user").filter(user=user).first()


def replace_totp(*, user: User, secret: str, now: int) -> AdminTotp:
    """A new, unconfirmed secret (any previous one, confirmed or not, is dropped)."""
    AdminTotp.objects.filter(user=user).delete()
    return AdminTotp.objects.create(user=user, secret=secret, created_ts=now)


def confirm_totp(totp: AdminTotp, *, step: int) -> None:
    AdminTotp.objects.filter(id=totp.id).update(confirmed=True, last_step=step)


def claim_totp_step(totp: AdminTotp, *, step: int) -> bool:
    """Record ``step`` as used; False when it (or a later one) already was: no code twice."""
    return AdminTotp.objects.filter(id=totp.id, last_step__lt=step).update(last_step=step) == 1


def delete_totp(user: User) -> int:
    return int(AdminTotp.objects.filter(user=user).delete()[0])


# --------------------------------------------------------------------------- rate-limit overrides


def get_ratelimit_override(user: User) -> RatelimitOverride | None:
    return RatelimitOverride.objects.filter(user=user).first()


def set_ratelimit_override(*, user: User, messages_per_second: int, burst_count: int) -> None:
    RatelimitOverride.objects.update_or_create(
        user=user, defaults={"messages_per_second": messages_per_second, "burst_count": burst_count}
    )


def delete_ratelimit_override(user: User) -> int:
    return int(RatelimitOverride.objects.filter(user=user).delete()[0])

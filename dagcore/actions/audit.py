"""The audit trail: every change an operator makes, through the console, the admin API, a
``manage.py`` command or beat (issues 13 and 14: who, via what, action, target, parameters
minus secrets, counts, result, IP).

Written to the database (Politburo's audit page filters it) and as one ``dagma.audit`` log
line, so a log pipeline sees changes even when the database is what broke.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagcore.clock import now_ms
from dagcore.models import AuditEntry
from dagcore.store import operations as store

logger = logging.getLogger("dagma.audit")

VIAS = ("console", "api", "cli", "beat")
#: Parameter names holding secrets: never stored, never logged (a substring match).
SECRET_WORDS = ("password", "token", "secret", "otp", "private", "signing_key", "mac")


@dataclass(frozen=True)
class Actor:
    """Who makes a change and through what: ``user_id`` (``cli:<unix user>`` for commands)."""

    user_id: str
    via: str
    ip: str = ""

    @classmethod
    def cli(cls) -> Actor:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "unknown"
        return cls(user_id=f"cli:{name}", via="cli")

    @classmethod
    def beat(cls, job: str) -> Actor:
        return cls(user_id=f"beat:{job}", via="beat")


def without_secrets(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with every secret-looking entry replaced by ``"<redacted>"`` (nested too)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if any(word in key.lower() for word in SECRET_WORDS):
            out[key] = "<redacted>"
        elif isinstance(value, Mapping):
            out[key] = without_secrets(value)
        else:
            out[key] = value
    return out


def record_audit(
    *,
    actor: Actor,
    action: str,
    target: str = "",
    params: Mapping[str, Any] | None = None,
    counts: Mapping[str, Any] | None = None,
    result: str = "ok",
    error: str = "",
) -> AuditEntry:
    """Record one change (``result``: ``ok``, ``dry-run`` or ``failed``, with ``error``)."""
    assert actor.via in VIAS, actor.via
    clean = without_secrets(params or {})
    entry = store.insert_audit_entry(
        ts=now_ms(), actor=actor.user_id, via=actor.via, action=action, target=target, params=clean,
        counts=counts or {}, result=result, error=error, ip=actor.ip,
    )  # fmt: skip
    logger.info(
        "%s %s %s by %s via %s: %s",
        action, target, result, actor.user_id, actor.via, error or dict(counts or {}),
        extra={"audit": {
            "id": entry.id, "actor": actor.user_id, "via": actor.via, "action": action, "target": target,
            "params": clean, "counts": dict(counts or {}), "result": result, "error": error, "ip": actor.ip,
        }},
    )  # fmt: skip
    return entry


def list_audit(**filters: Any) -> list[AuditEntry]:
    """Newest first (``dagcore.store.operations.list_audit_entries`` filters)."""
    return store.list_audit_entries(**filters)

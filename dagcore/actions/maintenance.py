"""Maintenance actions run by beat (and by operators through manage.py / Politburo)."""

from __future__ import annotations


def do_expire_uia_sessions() -> int:
    """Drop user-interactive-auth sessions older than their lifetime; returns how many."""
    from dagcore.store import uia

    return uia.delete_expired_sessions()


def do_censor_redactions() -> int:
    """Erase the original content of events redacted longer ago than the retention period."""
    from dagcore.store import redactions

    return redactions.censor_expired()

"""Maintenance actions run by beat (and by operators through manage.py / Politburo)."""

from __future__ import annotations

from dagcore.clock import now_ms
from dagcore.store import accounts, redactions, txns, uia


def do_expire_uia_sessions() -> int:
    """Drop user-interactive-auth sessions older than their lifetime; returns how many."""
    return uia.delete_expired_sessions()


def do_censor_redactions() -> int:
    """Erase the original content of events redacted longer ago than the retention period."""
    return redactions.censor_expired()


#: Clients retry a send with the same transaction ID for minutes, not days (Synapse
#: forgets them after 30 minutes); a day is generous and keeps the table small.
CLIENT_TXN_LIFETIME_MS = 24 * 3600 * 1000


def do_expire_client_txns() -> int:
    """Forget client transaction IDs older than a day; returns how many."""
    return txns.delete_txns_before(now_ms() - CLIENT_TXN_LIFETIME_MS)


def do_expire_login_tokens() -> int:
    """Drop login tokens past their expiry (used or not); returns how many."""
    return accounts.delete_expired_login_tokens(now_ms())

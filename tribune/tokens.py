"""Pagination and sync tokens: the token types live in ``dagcore.sync.tokens`` (the sync
engine hands them out); ``/messages`` accepts either kind as ``from``/``to``."""

from __future__ import annotations

from dagcore.sync.tokens import MAX_POSITION, RoomToken, SyncToken

__all__ = ["MAX_POSITION", "RoomToken", "SyncToken", "parse_pagination_token"]


def parse_pagination_token(value: str) -> SyncToken | RoomToken:
    """``/messages`` ``from``/``to``: a room token or a sync token."""
    if value.startswith("t"):
        return RoomToken.parse(value)
    return SyncToken.parse(value)

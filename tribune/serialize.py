"""The client event format lives in ``dagcore.events_format`` (the sync engine serialises
with it); Tribune's views import it from here or from there."""

from __future__ import annotations

from dagcore.events_format import CLIENT_KEYS, serialize_event, serialize_stored_events, strip_state

__all__ = ["CLIENT_KEYS", "serialize_event", "serialize_stored_events", "strip_state"]

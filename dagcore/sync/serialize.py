"""Events as one sync's filter wants them (spec "Filtering": ``event_format``, ``event_fields``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagcore.actions.room_access import get_client_event_extras
from dagcore.events_format import serialize_stored_events
from dagcore.protocol.push_rules import split_path
from dagcore.store.events import StoredEvent
from dagcore.sync.context import SyncContext


def event_batch(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"events": events}


def pick_fields(event: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Spec ``event_fields``: keep only these dot-separated paths (``\\.`` escapes a dot)."""
    out: dict[str, Any] = {}
    for path_text in fields:
        path = split_path(path_text)
        if not path:
            continue
        src: Any = event
        for part in path:
            if not isinstance(src, dict) or part not in src:
                break
            src = src[part]
        else:
            dst = out
            for part in path[:-1]:
                dst = dst.setdefault(part, {})
                if not isinstance(dst, dict):
                    break
            else:
                dst[path[-1]] = src
    return out


def only_event_fields(ctx: SyncContext, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The filter's ``event_fields`` of each event (all of it without ``event_fields``)."""
    fields = ctx.filter.event_fields
    if fields is None:
        return events
    return [pick_fields(e, fields) for e in events]


def format_events(
    ctx: SyncContext, events: Sequence[StoredEvent], *, timeline_events: bool
) -> list[dict[str, Any]]:
    """``events`` in the filter's ``event_format``; client-format timeline events carry
    ``prev_content`` and bundled relations (as of ``ctx.now``), state events do not."""
    if not events:
        return []
    if ctx.filter.event_format == "federation":
        out = [dict(e.event.pdu) for e in events]
    else:
        extras = get_client_event_extras(
            events,
            user_id=ctx.user_id,
            device_key=ctx.device_key,
            with_prev_content=timeline_events,
            with_relations=timeline_events,
            relations_as_of=ctx.now.events,
        )
        out = serialize_stored_events(events, extras, include_room_id=False, now=ctx.now_ms)
    return only_event_fields(ctx, out)

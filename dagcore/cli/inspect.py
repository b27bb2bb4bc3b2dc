"""``python manage.py dag inspect EVENT_ID`` — a stored event and its place in the DAG.

Prints one JSON object: the event (as stored), its prev and auth events (with
whether each is known), the state before it, its rejection / soft-fail /
outlier status, whether it is a forward extremity and its children. Operators
use it to debug state resets and stuck rooms. Unknown event -> exit 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from dagcore.cli.common import fail, main_wrapper, print_json
from dagcore.store import events as event_store
from dagcore.store import state as state_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("event_id", metavar="EVENT_ID", help="the event ID, e.g. '$abc...'")
    parser.add_argument("--no-state", action="store_true", help="omit the state before the event")


def _summary(stored: Any) -> dict[str, Any]:
    ev = stored.event
    out: dict[str, Any] = {"event_id": ev.event_id, "type": ev.type, "sender": ev.sender, "depth": ev.depth}
    if ev.state_key is not None:
        out["state_key"] = ev.state_key
    if stored.rejected_reason:
        out["rejected_reason"] = stored.rejected_reason
    if stored.soft_failed:
        out["soft_failed"] = True
    if stored.outlier:
        out["outlier"] = True
    return out


def _inspect(args: argparse.Namespace) -> int:

    stored = event_store.get_event_by_id(args.event_id)
    if stored is None:
        fail(f"no stored event {args.event_id!r}")
    ev = stored.event
    linked = event_store.get_events_by_ids([*ev.prev_event_ids, *ev.auth_event_ids])

    def describe(event_id: str) -> dict[str, Any]:
        found = linked.get(event_id)
        return _summary(found) if found else {"event_id": event_id, "known": False}

    result: dict[str, Any] = {
        "event": ev.pdu,
        "event_id": ev.event_id,
        "room_id": ev.room_id,
        "room_version": ev.room_version.identifier,
        "status": {
            "outlier": stored.outlier,
            "rejected_reason": stored.rejected_reason,
            "soft_failed": stored.soft_failed,
            "redacted_by": stored.redacted_by,
            "stream_ordering": stored.stream_ordering,
            "forward_extremity": event_store.is_forward_extremity(stored.room_nid, stored.nid),
        },
        "prev_events": [describe(e) for e in ev.prev_event_ids],
        "auth_events": [describe(e) for e in ev.auth_event_ids],
        "children": event_store.get_child_event_ids(ev.event_id),
        "state_group_before": stored.state_group_before,
        "state_group_after": stored.state_group,
    }
    if not args.no_state and stored.state_group_before is not None:
        nids = state_store.get_state_ids(stored.state_group_before)
        ids = event_store.get_event_ids_for_nids(nids.values())
        result["state_before"] = sorted([t, k, ids.get(n, f"<nid {n}>")] for (t, k), n in nids.items())
    print_json(result)
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point used by ``manage.py dag``; returns the exit code."""
    return main_wrapper(_inspect, args)

"""Reading a room's events and state as another server.

Spec: https://spec.matrix.org/v1.19/server-server-api/#retrieving-events,
#backfilling-and-retrieving-missing-events, #get_matrixfederationv1timestamp_to_eventroomid.

Every read goes through ``server_visibility``: the asking server must have a joined
member in the room and be allowed by its server ACL (else 403 ``M_FORBIDDEN``), and sees an event only where its
users could (history visibility at the event). Events redacted here are served
redacted; rejected events are never served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from dagcore.actions.server_acl import check_server_acl
from dagcore.clock import now_ms
from dagcore.http.errors import MatrixError, bad_json, forbidden, invalid_param, missing_param, not_found
from dagcore.models import Room
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.server_visibility import server_may_see_event
from dagcore.server_keys import get_server_name
from dagcore.store import dag as dag_store
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store import timeline as timeline_store
from dagcore.store.events import StoredEvent
from embassy.http import FederationRequest, federation_endpoint

#: Spec leaves the cap to us; Synapse caps backfill at 100 events too.
MAX_BACKFILL = 100
MAX_BACKFILL_FROM = 20
MAX_MISSING_EVENTS = 20
MAX_MISSING_FROM = 20

HISTORY_KEY = ("m.room.history_visibility", "")


def _room_for(origin: str, room_id: str) -> Room:
    """The room, if ``origin`` has a joined member in it (else 403, as for a room we do not know).

    Views pass IDs from the path decoded once (``unquote``): Embassy routes on the raw,
    percent-encoded path (``dagma_project.asgi.common.RawPathMiddleware``).
    """
    room = room_store.get_room(room_id)
    if room is None or origin not in room_store.get_joined_servers(room):
        raise forbidden(f"{origin[:255]} is not in the room")
    # Spec "Server Access Control Lists": a denied server reads nothing of the room (403).
    check_server_acl(room=room, origin=origin)
    return room


def _visible(room: Room, origin: str, events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """The events ``origin`` may see, in the given order (history visibility at each event)."""
    users = dag_store.get_server_user_ids(room, origin)
    keys = [HISTORY_KEY, *(("m.room.member", u) for u in users)]
    groups = {e.state_group_before for e in events if e.state_group_before is not None}
    at_groups = timeline_store.get_state_ids_at_groups({g: keys for g in groups})
    nids = {n for state in at_groups.values() for n in state.values()}
    state_events = event_store.get_events_by_nids(nids)
    out = []
    for event in events:
        if event.rejected_reason is not None:
            continue
        state = at_groups.get(event.state_group_before, {}) if event.state_group_before is not None else {}
        history_nid = state.get(HISTORY_KEY)
        history = (
            state_events[history_nid].event.content.get("history_visibility")
            if history_nid in state_events
            else None
        )
        memberships = {
            key[1]: str(state_events[nid].event.membership or "leave")
            for key, nid in state.items()
            if key[0] == "m.room.member" and nid in state_events
        }
        if server_may_see_event(
            origin,
            event_type=event.event.type,
            state_key=event.event.state_key,
            history_visibility=history if isinstance(history, str) else None,
            memberships_at_event=memberships,
        ):
            out.append(event)
    return out


def serve_pdu(stored: StoredEvent) -> dict[str, Any]:
    """The PDU as other servers get it: redacted if redacted here, without our unsigned data."""
    pdu = dict(stored.event.pdu)
    pdu.pop("unsigned", None)
    if stored.redacted_by is not None:
        pdu = redact_pdu(pdu, stored.event.room_version)
    return pdu


def _event_in_room(room: Room, event_id: str) -> StoredEvent:
    stored = event_store.get_event_by_id(event_id)
    if stored is None or stored.room_nid != room.pk or stored.rejected_reason is not None:
        raise not_found("Event not found")
    return stored


def _event_for(origin: str, room: Room, event_id: str) -> StoredEvent:
    stored = _event_in_room(room, event_id)
    if not _visible(room, origin, [stored]):
        raise forbidden(f"{origin[:255]} may not see this event")
    return stored


@federation_endpoint(authenticated=True)
def get_event(fed: FederationRequest, event_id: str) -> dict[str, Any]:
    """GET /_matrix/federation/v1/event/{eventId}"""
    assert fed.origin is not None
    event_id = unquote(event_id)  # matched on the raw path
    stored = event_store.get_event_by_id(event_id)
    if stored is None or stored.rejected_reason is not None:
        raise not_found("Event not found")
    room = room_store.get_room(stored.event.room_id)
    if room is None:
        raise not_found("Event not found")
    _room_for(fed.origin, room.room_id)
    stored = _event_for(fed.origin, room, event_id)
    return {"origin": get_server_name(), "origin_server_ts": now_ms(), "pdus": [serve_pdu(stored)]}


def _state_before(fed: FederationRequest, room_id: str) -> tuple[Room, StoredEvent, list[StoredEvent]]:
    assert fed.origin is not None
    event_id = fed.request.GET.get("event_id")
    if not event_id:
        raise missing_param("event_id is required")
    room = _room_for(fed.origin, unquote(room_id))
    stored = _event_for(fed.origin, room, event_id)
    if stored.outlier or (stored.state_group_before is None and stored.event.type != "m.room.create"):
        raise not_found("We do not know the state at this event")
    nids = (
        state_store.get_state_ids(stored.state_group_before) if stored.state_group_before is not None else {}
    )
    state = sorted(event_store.get_events_by_nids(nids.values()).values(), key=lambda e: (e.depth, e.nid))
    return room, stored, state


@federation_endpoint(authenticated=True)
def get_state(fed: FederationRequest, room_id: str) -> dict[str, Any]:
    """GET /_matrix/federation/v1/state/{roomId}?event_id= — the state before the event, and its auth chain"""
    _room, _event, state = _state_before(fed, room_id)
    chain = dag_store.get_auth_chain(state)
    return {"pdus": [serve_pdu(e) for e in state], "auth_chain": [serve_pdu(e) for e in chain]}


@federation_endpoint(authenticated=True)
def get_state_ids(fed: FederationRequest, room_id: str) -> dict[str, Any]:
    """GET /_matrix/federation/v1/state_ids/{roomId}?event_id="""
    _room, _event, state = _state_before(fed, room_id)
    chain = dag_store.get_auth_chain(state)
    return {"pdu_ids": [e.event_id for e in state], "auth_chain_ids": [e.event_id for e in chain]}


@federation_endpoint(authenticated=True)
def get_event_auth(fed: FederationRequest, room_id: str, event_id: str) -> dict[str, Any]:
    """GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}"""
    assert fed.origin is not None
    room = _room_for(fed.origin, unquote(room_id))
    stored = _event_for(fed.origin, room, unquote(event_id))  # matched on the raw path
    return {"auth_chain": [serve_pdu(e) for e in dag_store.get_auth_chain([stored])]}


def _int_param(value: Any, name: str, default: int, maximum: int) -> int:
    if value is None:
        return default
    if isinstance(value, str):
        if not value.isdigit():
            raise invalid_param(f"{name} must be a non-negative integer")
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise invalid_param(f"{name} must be a non-negative integer")
    return min(value, maximum)


@federation_endpoint(authenticated=True)
def backfill(fed: FederationRequest, room_id: str) -> dict[str, Any]:
    """GET /_matrix/federation/v1/backfill/{roomId}?v=&limit="""
    assert fed.origin is not None
    start = fed.request.GET.getlist("v")[:MAX_BACKFILL_FROM]
    if not start:
        raise missing_param("v is required")
    limit = _int_param(fed.request.GET.get("limit"), "limit", 10, MAX_BACKFILL)
    room = _room_for(fed.origin, unquote(room_id))
    walked = dag_store.walk_prev_events(room=room, start_ids=start, limit=limit, include_start=True)
    events = _visible(room, fed.origin, walked)
    return {
        "origin": get_server_name(),
        "origin_server_ts": now_ms(),
        "pdus": [serve_pdu(e) for e in events],
    }


def _id_list(body: dict[str, Any], key: str, maximum: int) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_json(f"{key} must be a list of event IDs")
    return value[:maximum]


@federation_endpoint(authenticated=True, methods=("POST",))
def get_missing_events(fed: FederationRequest, room_id: str) -> dict[str, Any]:
    """POST /_matrix/federation/v1/get_missing_events/{roomId}"""
    assert fed.origin is not None
    body = fed.body
    if not isinstance(body, dict):
        raise MatrixError(400, "M_NOT_JSON", "The body must be a JSON object")
    latest = _id_list(body, "latest_events", MAX_MISSING_FROM)
    earliest = _id_list(body, "earliest_events", 1000)
    limit = _int_param(body.get("limit"), "limit", 10, MAX_MISSING_EVENTS)
    min_depth = _int_param(body.get("min_depth"), "min_depth", 0, 2**63 - 1)
    room = _room_for(fed.origin, unquote(room_id))
    walked = dag_store.walk_prev_events(
        room=room, start_ids=latest, stop_ids=earliest, limit=limit, min_depth=min_depth
    )
    events = sorted(_visible(room, fed.origin, walked), key=lambda e: (e.depth, e.nid))
    return {"events": [serve_pdu(e) for e in events]}


@federation_endpoint(authenticated=True)
def timestamp_to_event(fed: FederationRequest, room_id: str) -> dict[str, Any]:
    """GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=&dir="""
    assert fed.origin is not None
    ts = _int_param(fed.request.GET.get("ts"), "ts", -1, 2**63 - 1)
    if ts < 0:
        raise missing_param("ts is required")
    direction = fed.request.GET.get("dir")
    if direction not in ("f", "b"):
        raise invalid_param("dir must be f or b")
    room = _room_for(fed.origin, unquote(room_id))
    found = timeline_store.get_event_closest_to_ts(room, ts=ts, direction=direction, max_stream=None)
    if found is None or not _visible(room, fed.origin, [found]):
        raise not_found(f"No event found {'after' if direction == 'f' else 'before'} {ts}")
    return {"event_id": found.event_id, "origin_server_ts": found.event.pdu["origin_server_ts"]}

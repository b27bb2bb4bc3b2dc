"""Room events: sending, state, history, context, redactions, relations, threads.

Spec: https://spec.matrix.org/v1.19/client-server-api/#events,
#redactions, #forming-relationships-between-events, #threading.
What a user may read is decided by ``dagcore.actions.room_access`` (history visibility).
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern

from dagcore.actions import accounts as account_actions
from dagcore.actions import backfill as backfill_actions
from dagcore.actions import redact as redact_actions
from dagcore.actions import room_access
from dagcore.actions import send_event as send_actions
from dagcore.actions.room_access import RoomReader
from dagcore.actions.txns import ClientTxn, client_txn
from dagcore.events_format import serialize_stored_events
from dagcore.http.errors import MatrixError
from dagcore.http.params import ascii_uint
from dagcore.http.responses import json_response
from dagcore.store import txns as txn_store
from dagcore.store.events import StoredEvent
from dagcore.store.timeline import TopoKey
from dagcore.sync.tokens import RoomToken, SyncToken, parse_pagination_token
from tribune import inputs
from tribune.http import RequestContext, client_route, endpoint, methods

DEFAULT_MESSAGES_LIMIT = 10
MAX_MESSAGES_LIMIT = 1000
DEFAULT_CONTEXT_LIMIT = 10
MAX_CONTEXT_LIMIT = 1000
DEFAULT_RELATIONS_LIMIT = 5
MAX_RELATIONS_LIMIT = 1000
DEFAULT_THREADS_LIMIT = 5
MAX_THREADS_LIMIT = 100


# --------------------------------------------------------------------------- parsing helpers


def _device_key(ctx: RequestContext) -> str | None:
    if ctx.user is None:
        return None
    return txn_store.device_key(device_id=ctx.device_id, token_id=ctx.token_id)


def _query_int(ctx: RequestContext, name: str, *, default: int | None = None, minimum: int = 0) -> int | None:
    return ctx.query_int(name, default=default, minimum=minimum)


def _limit(ctx: RequestContext, *, default: int, maximum: int, minimum: int = 0) -> int:
    value = _query_int(ctx, "limit", default=default, minimum=minimum)
    assert value is not None
    return min(value, maximum)


def _direction(ctx: RequestContext, *, default: str | None) -> str:
    value = ctx.query.get("dir", default)
    if value not in ("b", "f"):
        if value is None:
            raise MatrixError(400, "M_MISSING_PARAM", "dir is required ('b' or 'f')")
        raise MatrixError(400, "M_INVALID_PARAM", "dir must be 'b' or 'f'")
    return str(value)


def _position(reader: RoomReader, token: str | None, direction: str) -> TopoKey | None:
    """A ``from``/``to`` token (room token, or a /sync token) as a position in this room."""
    if token is None or token == "":
        return None
    parsed = parse_pagination_token(token)
    if isinstance(parsed, RoomToken):
        return (parsed.depth, parsed.stream)
    assert isinstance(parsed, SyncToken)
    key = room_access.key_at_stream(reader, parsed.events)
    if key is None:
        # The room had no events at that point: nothing before it, everything after it.
        return (-1, 0) if direction == "b" else None
    return key


def _client_txn(ctx: RequestContext, txn_id: str) -> ClientTxn:
    return client_txn(user_id=ctx.user_id, device_id=ctx.device_id, token_id=ctx.token_id, txn_id=txn_id)


def room_token(key: TopoKey) -> str:
    return str(RoomToken(key[0], key[1]))


def serialize_events(
    ctx: RequestContext, events: list[StoredEvent], *, relations: bool = True
) -> list[dict[str, Any]]:
    """Timeline events get bundled relations and ``prev_content``; state snapshots (``relations=False``) neither."""
    extras = room_access.get_client_event_extras(
        events,
        user_id=ctx.user.user_id if ctx.user else None,
        device_key=_device_key(ctx),
        with_relations=relations,
        with_prev_content=relations,
    )
    return serialize_stored_events(events, extras)


def _reader(ctx: RequestContext, room_id: str) -> RoomReader:
    return room_access.access_room_history(user_id=ctx.user.user_id if ctx.user else None, room_id=room_id)


# --------------------------------------------------------------------------- sending


@endpoint(allow_guest=True, rate_limit="message")
def send_message(ctx: RequestContext, room_id: str, event_type: str, txn_id: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"""
    account_actions.check_not_suspended(ctx.user)
    if account_actions.is_shadow_banned(ctx.user):
        return {"event_id": account_actions.fake_event_id()}  # stored nowhere, seen by nobody
    event_id = send_actions.check_send_event(
        txn=_client_txn(ctx, txn_id), room_id=room_id, event_type=event_type, content=ctx.body
    )
    return {"event_id": event_id}


@endpoint(allow_guest=True, rate_limit="message")
def put_state(ctx: RequestContext, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any]:
    """PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"""
    account_actions.check_not_suspended(ctx.user)
    if account_actions.is_shadow_banned(ctx.user):
        return {"event_id": account_actions.fake_event_id()}  # stored nowhere, seen by nobody
    event_id = send_actions.check_send_state(
        user_id=ctx.user_id, room_id=room_id, event_type=event_type, state_key=state_key, content=ctx.body
    )
    return {"event_id": event_id}


@endpoint(allow_guest=True, rate_limit="message")
def redact_event(ctx: RequestContext, room_id: str, event_id: str, txn_id: str) -> dict[str, Any]:
    """PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}"""
    body = ctx.json_object()
    redaction_id = redact_actions.check_redact_event(
        txn=_client_txn(ctx, txn_id), room_id=room_id, event_id=event_id, reason=body.get("reason")
    )
    return {"event_id": redaction_id}


# --------------------------------------------------------------------------- state


@endpoint(allow_guest=True)
def get_state_event(
    ctx: RequestContext, room_id: str, event_type: str, state_key: str = ""
) -> dict[str, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"""
    fmt = ctx.query.get("format", "content")
    if fmt not in ("content", "event"):
        raise MatrixError(400, "M_INVALID_PARAM", "format must be 'content' or 'event'")
    reader = _reader(ctx, room_id)
    stored = room_access.get_visible_state_event(reader, event_type, state_key)
    if stored is None:
        raise MatrixError(404, "M_NOT_FOUND", "Event not found")
    data = serialize_events(ctx, [stored], relations=False)[0]
    if fmt == "event":
        return data
    content: dict[str, Any] = data["content"]
    return content


@endpoint(allow_guest=True)
def get_state(ctx: RequestContext, room_id: str) -> Any:
    """GET /_matrix/client/v3/rooms/{roomId}/state"""
    reader = _reader(ctx, room_id)
    events = room_access.get_visible_state(reader)
    events.sort(key=lambda e: (e.event.type, e.event.state_key or ""))
    # A JSON array, not an object: built here because the wrapper answers dicts.
    return json_response(serialize_events(ctx, events, relations=False))


# --------------------------------------------------------------------------- history


@endpoint(allow_guest=True)
def get_messages(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/messages"""
    direction = _direction(ctx, default=None)
    parsed_filter = inputs.parse_messages_filter(ctx.query.get("filter"))
    default_limit = parsed_filter.limit if parsed_filter.limit is not None else DEFAULT_MESSAGES_LIMIT
    limit = _limit(ctx, default=default_limit, maximum=MAX_MESSAGES_LIMIT)
    from_token = ctx.query.get("from") or None
    to_token = ctx.query.get("to") or None
    reader = _reader(ctx, room_id)
    from_key = _position(reader, from_token, direction)
    to_key = _position(reader, to_token, "f" if direction == "b" else "b")
    if from_token is None:
        if direction == "b":
            end = room_access.room_end_key(reader)
            start_at = room_token(end) if end is not None else "t0_0"
        else:
            start_at = "t0_0"
    else:
        start_at = from_token
    page = backfill_actions.access_room_messages_backfilling(
        reader,
        from_key=from_key,
        direction=direction,
        limit=limit,
        to_key=to_key,
        event_filter=parsed_filter.sql,
        contains_url=parsed_filter.contains_url,
        lazy_load_members=parsed_filter.lazy_load_members,
    )
    out: dict[str, Any] = {"start": start_at, "chunk": serialize_events(ctx, page.events)}
    if page.next_key is not None and limit > 0:
        out["end"] = room_token(page.next_key)
    if parsed_filter.lazy_load_members:
        out["state"] = serialize_events(ctx, page.state, relations=False)
    return out


@endpoint(allow_guest=True)
def get_context(ctx: RequestContext, room_id: str, event_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}"""
    parsed_filter = inputs.parse_messages_filter(ctx.query.get("filter"))
    limit = _limit(ctx, default=DEFAULT_CONTEXT_LIMIT, maximum=MAX_CONTEXT_LIMIT)
    reader = _reader(ctx, room_id)
    context = room_access.access_event_context(
        reader,
        event_id=event_id,
        limit=limit,
        event_filter=parsed_filter.sql,
        contains_url=parsed_filter.contains_url,
        lazy_load_members=parsed_filter.lazy_load_members,
    )
    everything = [*context.before, context.event, *context.after]
    serialized = serialize_events(ctx, everything)
    n_before = len(context.before)
    return {
        "event": serialized[n_before],
        "events_before": serialized[:n_before],
        "events_after": serialized[n_before + 1 :],
        "start": room_token(context.start_key),
        "end": room_token(context.end_key),
        "state": serialize_events(ctx, context.state, relations=False),
    }


@endpoint(allow_guest=True)
def get_event(ctx: RequestContext, room_id: str, event_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}"""
    try:
        reader = _reader(ctx, room_id)
    except MatrixError:
        # Unknown room, closed room, unknown event: all look the same.
        raise MatrixError(404, "M_NOT_FOUND", "Event not found") from None
    stored = room_access.access_event(reader, event_id)
    return serialize_events(ctx, [stored])[0]


# --------------------------------------------------------------------------- relations and threads


@endpoint(allow_guest=True)
def get_relations(
    ctx: RequestContext,
    room_id: str,
    event_id: str,
    rel_type: str | None = None,
    event_type: str | None = None,
) -> dict[str, Any]:
    """GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]"""
    direction = _direction(ctx, default="b")
    limit = _limit(ctx, default=DEFAULT_RELATIONS_LIMIT, maximum=MAX_RELATIONS_LIMIT, minimum=1)
    recurse_raw = ctx.query.get("recurse", "false")
    if recurse_raw not in ("true", "false"):
        raise MatrixError(400, "M_INVALID_PARAM", "recurse must be 'true' or 'false'")
    from_token = ctx.query.get("from") or None
    to_token = ctx.query.get("to") or None
    reader = _reader(ctx, room_id)
    page = room_access.access_relations(
        reader,
        parent_id=event_id,
        rel_type=rel_type,
        event_type=event_type,
        from_key=_position(reader, from_token, direction),
        to_key=_position(reader, to_token, "f" if direction == "b" else "b"),
        direction=direction,
        limit=limit,
        recurse=recurse_raw == "true",
    )
    out: dict[str, Any] = {"chunk": serialize_events(ctx, page.events)}
    if page.next_key is not None:
        out["next_batch"] = room_token(page.next_key)
    if from_token is not None:
        out["prev_batch"] = from_token
    if page.recursion_depth is not None:
        out["recursion_depth"] = page.recursion_depth
    return out


def _threads_token(value: str | None) -> int | None:
    if not value:
        return None
    position = ascii_uint(value[2:], max_digits=22) if value.startswith("th") else None
    if position is None:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid pagination token")
    return position


@endpoint(allow_guest=True)
def get_threads(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v1/rooms/{roomId}/threads"""
    include = ctx.query.get("include", "all")
    if include not in ("all", "participated"):
        raise MatrixError(400, "M_INVALID_PARAM", "include must be 'all' or 'participated'")
    limit = _limit(ctx, default=DEFAULT_THREADS_LIMIT, maximum=MAX_THREADS_LIMIT, minimum=1)
    before = _threads_token(ctx.query.get("from"))
    reader = _reader(ctx, room_id)
    page = room_access.access_threads(
        reader, participated_only=include == "participated", before_stream=before, limit=limit
    )
    out: dict[str, Any] = {"chunk": serialize_events(ctx, page.roots)}
    if page.next_stream is not None:
        out["next_batch"] = f"th{page.next_stream}"
    return out


@endpoint(allow_guest=True)
def timestamp_to_event(ctx: RequestContext, room_id: str) -> dict[str, Any]:
    """GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event"""
    ts = _query_int(ctx, "ts")
    if ts is None:
        raise MatrixError(400, "M_MISSING_PARAM", "ts is required")
    direction = _direction(ctx, default=None)
    reader = _reader(ctx, room_id)
    found = room_access.access_event_at_timestamp(reader, ts=ts, direction=direction)
    return {"event_id": found.event_id, "origin_server_ts": found.event.origin_server_ts}


#: ``PUT /send`` is served without Django's request handler (``dagma_project.asgi.common.DirectViews``).
_send_route = methods(PUT=send_message)
_send_route.asgi_direct = ("PUT",)  # type: ignore[attr-defined]

routes: list[URLPattern] = [
    client_route("rooms/<room_id>/send/<event_type>/<txn_id>", _send_route),
    client_route("rooms/<room_id>/state", methods(GET=get_state)),
    client_route("rooms/<room_id>/state/<event_type>", methods(GET=get_state_event, PUT=put_state)),
    client_route("rooms/<room_id>/state/<event_type>/", methods(GET=get_state_event, PUT=put_state)),
    client_route(
        "rooms/<room_id>/state/<event_type>/<state_key>", methods(GET=get_state_event, PUT=put_state)
    ),
    client_route("rooms/<room_id>/redact/<event_id>/<txn_id>", methods(PUT=redact_event)),
    client_route("rooms/<room_id>/messages", methods(GET=get_messages)),
    client_route("rooms/<room_id>/context/<event_id>", methods(GET=get_context)),
    client_route("rooms/<room_id>/event/<event_id>", methods(GET=get_event)),
    client_route("rooms/<room_id>/relations/<event_id>", methods(GET=get_relations), versions=("v1",)),
    client_route(
        "rooms/<room_id>/relations/<event_id>/<rel_type>", methods(GET=get_relations), versions=("v1",)
    ),
    client_route(
        "rooms/<room_id>/relations/<event_id>/<rel_type>/<event_type>",
        methods(GET=get_relations),
        versions=("v1",),
    ),
    client_route("rooms/<room_id>/threads", methods(GET=get_threads), versions=("v1",)),
    client_route("rooms/<room_id>/timestamp_to_event", methods(GET=timestamp_to_event), versions=("v1",)),
]

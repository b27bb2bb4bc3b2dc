"""What server admins read of rooms and reports, and the smaller admin writes around them:
room messages/context/timestamp lookups without membership, any event by ID, media used in
a room, event reports, database size per room, force-joining a local user, server notices.

Synapse docs: ``docs/admin_api/rooms.md`` (Room Messages, Timestamp to Event, Event Context),
``fetch_event.md``, ``media_admin_api.md`` (List all media in a room), ``event_reports.md``,
``statistics.md`` (largest rooms), ``room_membership.md`` (Edit Room Membership),
``server_notices.md`` (Server Notices). An admin reads everything: no history visibility.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings

from dagcore.actions import account_data as account_data_actions
from dagcore.actions import media_admin
from dagcore.actions.audit import Actor, record_audit
from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.persist_event import send_local_event
from dagcore.actions.room_admin import access_room, resolve_room_id_or_alias
from dagcore.actions.txns import ClientTxn, check_txn_id, get_answered_event_id
from dagcore.clock import now_ms
from dagcore.events_format import serialize_event
from dagcore.http.errors import MatrixError
from dagcore.protocol.identifiers import is_valid_user_id
from dagcore.server_keys import get_server_name
from dagcore.store import accounts as account_store
from dagcore.store import events as event_store
from dagcore.store import room_admin as store
from dagcore.store import state as state_store
from dagcore.store import timeline
from dagcore.store.events import StoredEvent

MAX_LIMIT = 1000


def _client_events(events: list[StoredEvent]) -> list[dict[str, Any]]:
    return [serialize_event(s.effective_event) for s in events]


#: Parses a pagination token: a room position ``(depth, stream)``, or a sync token's events
#: stream position (an ``int``). The interface passes it with :data:`FormatToken`: this
#: module stays below ``dagcore.sync``, which owns the token formats.
ParseToken = Callable[[str], "tuple[int, int] | int"]
FormatToken = Callable[[tuple[int, int]], str]


def _key(room: Any, token: str | None, direction: str, parse: ParseToken) -> timeline.TopoKey | None:
    if not token:
        return None
    parsed = parse(token)
    if isinstance(parsed, tuple):
        return parsed
    key = timeline.get_topological_key_at_stream(room, parsed)
    if key is None:
        return (-1, 0) if direction == "b" else None
    return key


def _event_filter(raw: str | None) -> timeline.EventFilter | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "filter must be a JSON RoomEventFilter") from None
    if not isinstance(data, dict):
        raise MatrixError(400, "M_INVALID_PARAM", "filter must be a JSON object")

    def strings(name: str) -> tuple[str, ...] | None:
        value = data.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MatrixError(400, "M_INVALID_PARAM", f"filter.{name} must be a list of strings")
        return tuple(value)

    return timeline.EventFilter(
        types=strings("types"), not_types=strings("not_types") or (), senders=strings("senders"),
        not_senders=strings("not_senders") or (),
    )  # fmt: skip


def _limit(raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", "limit must be a non-negative integer")
    return min(int(raw), MAX_LIMIT)


def get_room_messages(
    room_id: str, query: dict[str, str], *, parse_token: ParseToken, format_token: FormatToken
) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/rooms/<room_id>/messages`` (from, to, limit, filter, dir)."""
    room = access_room(room_id)
    direction = query.get("dir", "f")
    if direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", "dir must be 'f' or 'b'")
    limit = _limit(query.get("limit"), 10)
    from_token = query.get("from") or None
    from_key = _key(room, from_token, direction, parse_token)
    to_key = _key(room, query.get("to") or None, "f" if direction == "b" else "b", parse_token)
    events = timeline.paginate_room_events(
        room, from_key=from_key, direction=direction, limit=limit, to_key=to_key,
        event_filter=_event_filter(query.get("filter")),
    )  # fmt: skip
    if from_token is None:
        end = timeline.get_room_end_key(room) if direction == "b" else None
        start = format_token(end) if end is not None else format_token((0, 0))
    else:
        start = from_token
    out: dict[str, Any] = {"chunk": _client_events(events), "start": start}
    if events and len(events) == limit:
        last = events[-1]
        stream = last.stream_ordering or 0
        out["end"] = format_token((last.depth, stream - 1) if direction == "b" else (last.depth, stream))
    return out


def get_event_context(
    room_id: str, event_id: str, query: dict[str, str], *, format_token: FormatToken
) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/rooms/<room_id>/context/<event_id>``: as the client API's /context."""
    room = access_room(room_id)
    target = timeline.get_room_event(room, event_id)
    if target is None:
        raise MatrixError(404, "M_NOT_FOUND", "Event not found.")
    limit = _limit(query.get("limit"), 10)
    event_filter = _event_filter(query.get("filter"))
    key = (target.depth, target.stream_ordering or 0)
    before = timeline.paginate_room_events(room, from_key=(key[0], key[1] - 1), direction="b",
                                           limit=limit // 2, event_filter=event_filter)  # fmt: skip
    after = timeline.paginate_room_events(room, from_key=key, direction="f", limit=limit - limit // 2,
                                          event_filter=event_filter)  # fmt: skip
    start = (before[-1].depth, (before[-1].stream_ordering or 0) - 1) if before else (key[0], key[1] - 1)
    end = (after[-1].depth, after[-1].stream_ordering or 0) if after else key
    group = (after[-1] if after else target).state_group
    state: list[StoredEvent] = []
    if group is not None:
        state = list(event_store.get_events_by_nids(state_store.get_state_ids(group).values()).values())
    return {
        "event": _client_events([target])[0],
        "events_before": _client_events(before),
        "events_after": _client_events(after),
        "start": format_token(start),
        "end": format_token(end),
        "state": _client_events(state),
    }


def get_timestamp_to_event(room_id: str, query: dict[str, str]) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/rooms/<room_id>/timestamp_to_event`` (ts, dir default f)."""
    room = access_room(room_id)
    raw = query.get("ts")
    if raw is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing integer query parameter 'ts'")
    if not raw.isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'ts' must be an integer")
    direction = query.get("dir", "f")
    if direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", "dir must be 'f' or 'b'")
    found = timeline.get_event_closest_to_ts(room, ts=int(raw), direction=direction, max_stream=None)
    if found is None:
        raise MatrixError(404, "M_NOT_FOUND", f"Unable to find event from {raw} in direction {direction}")
    return {"event_id": found.event_id, "origin_server_ts": found.event.origin_server_ts}


def fetch_event(event_id: str) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/fetch_event/<event_id>``: any stored event, whatever the admin's rooms."""
    stored = event_store.get_event_by_id(event_id)
    if stored is None:
        raise MatrixError(404, "M_NOT_FOUND", "Event not found")
    return {"event": serialize_event(stored.effective_event)}


def get_room_media(room_id: str) -> dict[str, list[str]]:
    """``GET /_synapse/admin/v1/room/<room_id>/media``: the room's media (404 for a room this
    server does not hold), listed by ``media_admin.list_room_media``."""
    access_room(room_id)
    return media_admin.list_room_media(room_id=room_id)


def get_largest_rooms() -> dict[str, Any]:
    """``GET /_synapse/admin/v1/statistics/database/rooms``: the ten rooms taking most space."""
    return {"rooms": [{"room_id": r, "estimated_size": size} for r, size in store.get_room_sizes(limit=10)]}


# --------------------------------------------------------------------------- event reports


def _report_json(row: Any, facts: dict[str, dict[str, Any]], senders: dict[str, str]) -> dict[str, Any]:
    room = facts.get(row.room_id or "", {})
    return {
        "id": row.id, "received_ts": row.received_ts, "room_id": row.room_id, "name": room.get("name"),
        "event_id": row.event_id, "user_id": row.reporter, "reason": row.reason, "score": row.score,
        "sender": senders.get(row.event_id or ""), "canonical_alias": room.get("alias"),
    }  # fmt: skip


def _room_names(room_ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in store.get_room_facts(sorted(set(room_ids))):
        out[f.room_id] = {
            "name": f.state.get("m.room.name", {}).get("name"),
            "alias": f.state.get("m.room.canonical_alias", {}).get("alias"),
            "topic": f.state.get("m.room.topic", {}).get("topic"),
        }
    return out


def list_event_reports(query: dict[str, str]) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/event_reports`` (from, limit, dir default b, user_id, room_id, sender_user_id)."""
    start = query.get("from", "0")
    if not start.isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", "The start parameter must be a positive integer.")
    limit = _limit(query.get("limit"), 100)
    direction = query.get("dir", "b")
    if direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", "Unknown direction: " + direction)
    rows, total = store.list_event_reports(
        offset=int(start), limit=limit, newest_first=direction == "b", reporter_contains=query.get("user_id"),
        room_contains=query.get("room_id"), sender=query.get("sender_user_id"),
    )  # fmt: skip
    senders = store.get_event_senders([r.event_id for r in rows if r.event_id])
    facts = _room_names([r.room_id for r in rows if r.room_id])
    out: dict[str, Any] = {"event_reports": [_report_json(r, facts, senders) for r in rows], "total": total}
    if int(start) + len(rows) < total:
        out["next_token"] = int(start) + len(rows)
    return out


def _report(report_id: str) -> Any:
    if not report_id.isdigit():
        raise MatrixError(
            400,
            "M_INVALID_PARAM",
            "The report_id parameter must be a string representing a positive integer.",
        )
    row = store.get_event_report(int(report_id))
    if row is None:
        raise MatrixError(404, "M_NOT_FOUND", "Event report not found")
    return row


def get_event_report(report_id: str) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/event_reports/<report_id>`` (with ``event_json``)."""
    row = _report(report_id)
    stored = event_store.get_event_by_id(row.event_id) if row.event_id else None
    senders = {row.event_id: stored.event.sender} if stored is not None else {}
    out = _report_json(row, _room_names([row.room_id] if row.room_id else []), senders)
    out["event_json"] = dict(stored.event.pdu) if stored is not None else None
    return out


def check_delete_event_report(*, report_id: str, actor: Actor) -> dict[str, Any]:
    """``DELETE /_synapse/admin/v1/event_reports/<report_id>``."""
    row = _report(report_id)
    store.delete_report(row.id)
    record_audit(actor=actor, action="delete_event_report", target=str(row.id),
                 params={"event_id": row.event_id, "room_id": row.room_id})  # fmt: skip
    return {}


# --------------------------------------------------------------------------- joining users, server notices


def check_join_user_to_room(*, room_id_or_alias: Any, user_id: Any, admin_user_id: str, actor: Actor) -> str:
    """``POST /_synapse/admin/v1/join/<room_id_or_alias>``: join a local user; a room that is not
    public needs the admin joined there, to invite the user first (Synapse's rule)."""
    if not isinstance(user_id, str) or not is_valid_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", "user_id must be a user ID")
    if user_id.split(":", 1)[1] != get_server_name():
        raise MatrixError(400, "M_INVALID_PARAM", "This endpoint can only be used with local users")
    if account_store.get_user(user_id) is None:
        raise MatrixError(404, "M_NOT_FOUND", "User not found")
    room_id = resolve_room_id_or_alias(str(room_id_or_alias))
    room = access_room(room_id)
    state = state_store.get_current_state_events(room)
    member = state.get(("m.room.member", user_id))
    if member is not None and member.membership == "join":
        return room_id
    rules = state.get(("m.room.join_rules", ""))
    if (rules.content.get("join_rule") if rules is not None else "invite") != "public" and (
        member is None or member.membership != "invite"
    ):
        admin = state.get(("m.room.member", admin_user_id))
        if admin is None or admin.membership != "join":
            raise MatrixError(
                403, "M_FORBIDDEN", "You are not in the room: you can only join users to public rooms"
            )
        send_local_event(room_id=room_id, sender=admin_user_id, event_type="m.room.member",
                         content={"membership": "invite"}, state_key=user_id)  # fmt: skip
    send_local_event(room_id=room_id, sender=user_id, event_type="m.room.member", content={"membership": "join"},
                     state_key=user_id)  # fmt: skip
    record_audit(actor=actor, action="join_user_to_room", target=room_id, params={"user_id": user_id})
    return room_id


def _notices_config() -> dict[str, Any]:
    config = settings.DAGMA.server_notices
    if not config:
        raise MatrixError(400, "M_UNKNOWN", "Server notices are not enabled on this server")
    return dict(config)


def _notices_room_for(user_id: str, config: dict[str, Any]) -> str:
    """The user's server notices room (the system user's room they are in or invited to), made if needed."""
    system = f"@{config['system_mxid_localpart']}:{get_server_name()}"
    existing = store.get_shared_room_created_by(creator=system, user_id=user_id)
    if existing is not None:
        return existing
    profile = {k: v for k, v in (("displayname", config.get("system_mxid_display_name")),
                                 ("avatar_url", config.get("system_mxid_avatar_url"))) if v}  # fmt: skip
    initial_state: list[tuple[str, str, dict[str, Any]]] = []
    if config.get("room_avatar_url"):
        initial_state.append(("m.room.avatar", "", {"url": config["room_avatar_url"]}))
    room_id, _ = create_room(
        RoomSpec(
            creator=system, room_version=settings.DAGMA.default_room_version, preset="private_chat",
            name=config.get("room_name") or "Server Notices", topic=config.get("room_topic"),
            initial_state=initial_state, creator_member_content=profile,
            # Only the system user speaks there.
            power_level_content_override={"events_default": 100},
        )
    )  # fmt: skip
    send_local_event(room_id=room_id, sender=system, event_type="m.room.member", content={"membership": "invite"},
                     state_key=user_id)  # fmt: skip
    if config.get("auto_join"):
        send_local_event(room_id=room_id, sender=user_id, event_type="m.room.member",
                         content={"membership": "join"}, state_key=user_id)  # fmt: skip
    account_data_actions.do_add_room_tag(user_id=user_id, room_id=room_id, tag="m.server_notice", content={})
    return room_id


def check_send_server_notice(
    *, body: dict[str, Any], actor: Actor, txn_id: str | None = None
) -> dict[str, str]:
    """``POST /_synapse/admin/v1/send_server_notice`` (or ``PUT .../{txnId}``: a retry with the
    same admin and transaction ID answers the first notice again): ``user_id``, ``content``,
    ``type``, ``state_key``."""
    config = _notices_config()
    txn = None
    if txn_id is not None:
        check_txn_id(txn_id)
        txn = ClientTxn(
            user_id=actor.user_id, device_key="admin-api", txn_id=txn_id, scope="send_server_notice"
        )
        answered = get_answered_event_id(txn)
        if answered is not None:
            return {"event_id": answered}
    user_id = body.get("user_id")
    content = body.get("content")
    event_type = body.get("type", "m.room.message")
    state_key = body.get("state_key")
    if not isinstance(user_id, str) or not is_valid_user_id(user_id):
        raise MatrixError(400, "M_MISSING_PARAM", "Missing or invalid param 'user_id'")
    if not isinstance(content, dict):
        raise MatrixError(400, "M_MISSING_PARAM", "Missing or invalid param 'content'")
    if not isinstance(event_type, str) or (state_key is not None and not isinstance(state_key, str)):
        raise MatrixError(400, "M_INVALID_PARAM", "'type' and 'state_key' must be strings")
    if user_id.split(":", 1)[1] != get_server_name():
        raise MatrixError(400, "M_UNKNOWN", "Server notices can only be sent to local users")
    if account_store.get_user(user_id) is None:
        raise MatrixError(404, "M_NOT_FOUND", "User not found")
    room_id = _notices_room_for(user_id, config)
    system = f"@{config['system_mxid_localpart']}:{get_server_name()}"
    sent = send_local_event(room_id=room_id, sender=system, event_type=event_type, content=content,
                            state_key=state_key, txn=txn)  # fmt: skip
    event_id = sent.event.event_id
    record_audit(actor=actor, action="send_server_notice", target=user_id,
                 params={"type": event_type, "room_id": room_id, "event_id": event_id})  # fmt: skip
    return {"event_id": event_id}


# --------------------------------------------------------------------------- the console's reports page


def get_reports_for_console(*, kind: str | None, unresolved_only: bool) -> list[dict[str, Any]]:
    """Event, room and user reports with what a moderator needs to judge them: reporter, sender,
    reason, score, age, and the event (its ciphertext and algorithm when it is encrypted)."""
    if kind not in (None, "event", "room", "user"):
        raise MatrixError(400, "M_INVALID_PARAM", "kind must be event, room or user")
    rows = store.list_reports(kind=kind, unresolved_only=unresolved_only)
    events = event_store.get_events_by_ids([r.event_id for r in rows if r.event_id])
    names = _room_names([r.room_id for r in rows if r.room_id])
    now = now_ms()
    out = []
    for r in rows:
        stored = events.get(r.event_id or "")
        event = stored.effective_event if stored is not None else None
        encrypted = event is not None and event.type == "m.room.encrypted"
        out.append({
            "id": r.id,
            "kind": "event" if r.event_id else ("user" if r.reported_user_id else "room"),
            "room_id": r.room_id, "room_name": names.get(r.room_id or "", {}).get("name"),
            "room_known": (r.room_id or "") in names,
            "event_id": r.event_id, "reported_user_id": r.reported_user_id,
            "reporter": r.reporter, "reason": r.reason, "score": r.score,
            "received_ts": r.received_ts, "age_ms": max(0, now - r.received_ts), "resolved_ts": r.resolved_ts,
            "sender": event.sender if event is not None else r.reported_user_id,
            "event_type": event.type if event is not None else None,
            "encrypted": encrypted,
            "algorithm": event.content.get("algorithm") if encrypted and event is not None else None,
            "content": json.dumps(event.content, sort_keys=True, ensure_ascii=False)[:2000] if event is not None else None,
            "redacted": bool(stored.redacted_by) if stored is not None else False,
            "event_gone": bool(r.event_id) and stored is None,
        })  # fmt: skip
    return out


def check_dismiss_report(*, report_id: int, actor: Actor) -> None:
    """Mark a report handled (it stays listed under "all")."""
    row = store.get_report(report_id)
    if row is None:
        raise MatrixError(404, "M_NOT_FOUND", "Report not found")
    store.resolve_report(report_id, ts=now_ms())
    record_audit(actor=actor, action="dismiss_report", target=str(report_id))


def get_report_row(report_id: int) -> Any:
    row = store.get_report(report_id)
    if row is None:
        raise MatrixError(404, "M_NOT_FOUND", "Report not found")
    return row


# --------------------------------------------------------------------------- room reports


def _room_report_json(row: Any, facts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    room = facts.get(row.room_id or "", {})
    return {
        "id": row.id, "received_ts": row.received_ts, "room_id": row.room_id, "user_id": row.reporter,
        "reason": row.reason, "canonical_alias": room.get("alias"), "name": room.get("name"),
        "topic": room.get("topic"),
    }  # fmt: skip


def list_room_reports(query: dict[str, str]) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/room_reports`` (from: a report ID, newest first; limit, user_id, room_id)."""
    start = query.get("from")
    if start is not None and not start.isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", "from must be a report ID")
    limit = _limit(query.get("limit"), 100)
    if limit < 1:
        raise MatrixError(400, "M_INVALID_PARAM", "limit must be a positive integer")
    rows, total, following = store.list_room_reports(
        before_id=int(start) if start is not None else None, limit=limit,
        reporter=query.get("user_id"), room_id=query.get("room_id"),
    )  # fmt: skip
    facts = _room_names([r.room_id for r in rows if r.room_id])
    out: dict[str, Any] = {"room_reports": [_room_report_json(r, facts) for r in rows], "total": total}
    if following is not None:
        out["next_batch"] = following
    return out


def get_room_report(report_id: str) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/room_reports/<report_id>``."""
    if not report_id.isdigit():
        raise MatrixError(400, "M_INVALID_PARAM", "The report_id parameter must be a positive integer.")
    row = store.get_report(int(report_id))
    if row is None or row.event_id is not None or row.room_id is None or row.reported_user_id is not None:
        raise MatrixError(404, "M_NOT_FOUND", "Room report not found")
    return _room_report_json(row, _room_names([row.room_id]))

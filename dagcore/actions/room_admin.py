"""Server admins' room operations (issue 13), shaped as Synapse's admin API answers them.

Synapse docs: ``docs/admin_api/rooms.md`` (List Room, Room Details, Members, State, Block
Room, Delete Room v1/v2 and its status, Make Room Admin, Forward Extremities). The admin
API, the console and ``manage.py`` commands call these; each change is one audit entry.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from dagcore.actions.audit import Actor, record_audit
from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.persist_event import send_local_event
from dagcore.clock import now_ms
from dagcore.events_format import serialize_event
from dagcore.http.errors import MatrixError
from dagcore.models import AdminJob
from dagcore.protocol.auth_rules import get_user_power_level
from dagcore.protocol.identifiers import is_valid_room_id, is_valid_user_id
from dagcore.protocol.room_versions import get_room_version
from dagcore.server_keys import get_server_name
from dagcore.store import directory as directory_store
from dagcore.store import room_admin as store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store import transaction
from dagcore.store.events import get_forward_extremities
from dagcore.store.room_admin import RoomFacts

DEFAULT_ROOM_NAME = "Content Violation Notification"
DEFAULT_MESSAGE = (
    "Sharing illegal content on this server is not permitted and rooms in violation will be blocked."
)


def list_room_ids() -> list[str]:
    return store.list_room_ids()


def access_room(room_id: str) -> Any:
    """The room row, or Synapse's 404 for a room this server does not know."""
    room = room_store.get_room(room_id) if isinstance(room_id, str) else None
    if room is None:
        raise MatrixError(404, "M_NOT_FOUND", "Room not found")
    return room


def resolve_room_id_or_alias(value: str) -> str:
    if value.startswith("#"):
        target = directory_store.get_alias(value)
        if target is None:
            raise MatrixError(404, "M_NOT_FOUND", f"Room alias {value} not found")
        return target.room_id
    if not is_valid_room_id(value):
        raise MatrixError(400, "M_INVALID_PARAM", f"{value} was not a legal room ID or room alias")
    return value


# --------------------------------------------------------------------------- list and details


def _summary(f: RoomFacts) -> dict[str, Any]:
    s = f.state
    create = s.get("m.room.create", {})
    encryption = s.get("m.room.encryption", {}).get("algorithm")
    return {
        "room_id": f.room_id,
        "name": _str(s.get("m.room.name", {}).get("name")),
        "canonical_alias": _str(s.get("m.room.canonical_alias", {}).get("alias")),
        "joined_members": f.joined_members,
        "joined_local_members": f.joined_local_members,
        "version": f.version,
        "creator": _str(create.get("creator")) or f.creator,
        "encryption": _str(encryption),
        "federatable": create.get("m.federate", True) is not False,
        "public": f.public,
        "join_rules": _str(s.get("m.room.join_rules", {}).get("join_rule")),
        "guest_access": _str(s.get("m.room.guest_access", {}).get("guest_access")),
        "history_visibility": _str(s.get("m.room.history_visibility", {}).get("history_visibility")),
        "state_events": f.state_events,
        "room_type": _str(create.get("type")),
    }


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


#: Synapse's ``order_by`` values -> (summary key, largest first).
ORDER_BY = {
    "name": ("name", False),
    "alphabetical": ("name", False),
    "canonical_alias": ("canonical_alias", False),
    "joined_members": ("joined_members", True),
    "size": ("joined_members", True),
    "joined_local_members": ("joined_local_members", True),
    "version": ("version", True),
    "creator": ("creator", False),
    "encryption": ("encryption", False),
    "federatable": ("federatable", True),
    "public": ("public", True),
    "join_rules": ("join_rules", False),
    "guest_access": ("guest_access", False),
    "history_visibility": ("history_visibility", False),
    "state_events": ("state_events", True),
}


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter {name!r} must be an integer") from None
    if value < 0:
        raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter {name!r} must be a non-negative integer")
    return value


def _bool_param(query: Mapping[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise MatrixError(
            400, "M_INVALID_PARAM", f"Boolean query parameter {name!r} must be one of ['true', 'false']"
        )
    return raw == "true"


def _sort_value(value: Any, *, largest_first: bool) -> tuple[int, Any]:
    # Missing values sort last whatever the direction (as Synapse's NULLS LAST).
    if value is None:
        return (1, "")
    if isinstance(value, bool):
        value = int(value)
    if largest_first and isinstance(value, str):
        # Room versions: numeric ones compare as numbers.
        with contextlib.suppress(ValueError):
            return (0, -float(value))
        return (0, value)
    return (0, -value if largest_first and isinstance(value, int) else value)


def list_rooms(query: Mapping[str, str]) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/rooms`` (from, limit, order_by, dir, search_term, public_rooms, empty_rooms)."""
    start = _int_param(query, "from", 0)
    limit = _int_param(query, "limit", 100)
    order_by = query.get("order_by", "name")
    if order_by not in ORDER_BY:
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown value for order_by: {order_by}")
    direction = query.get("dir", "f")
    if direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown direction: {direction}")
    public = _bool_param(query, "public_rooms")
    empty = _bool_param(query, "empty_rooms")
    term = query.get("search_term")
    rooms = [_summary(f) for f in store.get_room_facts()]
    if term:
        lowered = term.lower()
        rooms = [
            r for r in rooms
            if lowered in (r["name"] or "").lower()
            or lowered in (r["canonical_alias"] or "").split(":", 1)[0].lower()
            or term in r["room_id"]
        ]  # fmt: skip
    if public is not None:
        rooms = [r for r in rooms if r["public"] is public]
    if empty is not None:
        rooms = [r for r in rooms if (r["joined_members"] == 0) is empty]
    key, largest_first = ORDER_BY[order_by]
    rooms.sort(key=lambda r: (_sort_value(r[key], largest_first=largest_first), r["room_id"]))
    if direction == "b":
        rooms.reverse()
    page = rooms[start : start + limit]
    answer: dict[str, Any] = {"rooms": page, "offset": start, "total_rooms": len(rooms)}
    if start + limit < len(rooms):
        answer["next_batch"] = start + limit
    if start > 0:
        answer["prev_batch"] = max(0, start - limit)
    return answer


def get_room_details(room_id: str) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/rooms/<room_id>``."""
    room = access_room(room_id)
    (facts,) = store.get_room_facts([room_id])
    details = _summary(facts)
    details["topic"] = _str(facts.state.get("m.room.topic", {}).get("topic"))
    details["avatar"] = _str(facts.state.get("m.room.avatar", {}).get("url"))
    details["joined_local_devices"] = store.count_local_devices_in_room(room)
    details["forgotten"] = store.all_local_members_forgot(room)
    return details


def get_room_facts_for_console(
    room_ids: list[str] | None = None, *, with_event_counts: bool = True
) -> list[dict[str, Any]]:
    """The room list with the console's extra columns (events, extremities, invited members).
    Counting events reads every event of the rooms: leave it out (``events`` None) and ask
    :func:`count_room_events` for the rows shown."""
    out = []
    for f in store.get_room_facts(room_ids, with_event_counts=with_event_counts):
        row = _summary(f)
        row.update(
            events=f.events, forward_extremities=f.forward_extremities, invited_members=f.invited_members
        )
        out.append(row)
    return out


def count_room_events(room_ids: list[str]) -> dict[str, int]:
    """How many events each of these rooms holds (one grouped query)."""
    return store.count_events_by_room(room_ids)


def get_room_members(room_id: str) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/rooms/<room_id>/members``: the joined members."""
    room = access_room(room_id)
    members = store.get_room_member_ids(room)
    return {"members": members, "total": len(members)}


def get_room_state(room_id: str, *, event_type: str | None = None) -> list[dict[str, Any]]:
    """``GET /_synapse/admin/v1/rooms/<room_id>/state`` (``type`` filter): client-format events."""
    room = access_room(room_id)
    events = state_store.get_current_state_events(room)
    out = [
        serialize_event(event)
        for (etype, _skey), event in sorted(events.items())
        if event_type is None or etype == event_type
    ]
    return out


# --------------------------------------------------------------------------- block


def get_block_status(room_id: str) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/rooms/<room_id>/block``."""
    _check_room_id(room_id)
    block = store.get_room_block(room_id)
    return {"block": True, "user_id": block.user_id} if block is not None else {"block": False}


def _check_room_id(room_id: str) -> None:
    if not is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", f"{room_id} is not a legal room ID")


def check_set_block(*, room_id: str, block: Any, actor: Actor) -> dict[str, bool]:
    """``PUT /_synapse/admin/v1/rooms/<room_id>/block``: a room may be blocked before we know it."""
    _check_room_id(room_id)
    if not isinstance(block, bool):
        raise MatrixError(400, "M_BAD_JSON", "Param 'block' must be a boolean")
    if block:
        store.block_room(room_id=room_id, user_id=actor.user_id, ts=now_ms())
    else:
        store.unblock_room(room_id)
    record_audit(actor=actor, action="block_room" if block else "unblock_room", target=room_id)
    return {"block": block}


# --------------------------------------------------------------------------- delete


@dataclass(frozen=True)
class DeleteRoomRequest:
    room_id: str
    new_room_user_id: str | None = None
    room_name: str = DEFAULT_ROOM_NAME
    message: str = DEFAULT_MESSAGE
    block: bool = False
    purge: bool = True
    force_purge: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id, "new_room_user_id": self.new_room_user_id, "room_name": self.room_name,
            "message": self.message, "block": self.block, "purge": self.purge, "force_purge": self.force_purge,
        }  # fmt: skip


def parse_delete_room(room_id: str, body: Any) -> DeleteRoomRequest:
    """Synapse's body: ``new_room_user_id``, ``room_name``, ``message``, ``block``, ``purge``, ``force_purge``."""
    _check_room_id(room_id)
    if not isinstance(body, dict):
        raise MatrixError(400, "M_BAD_JSON", "The body must be a JSON object (at least {})")
    new_user = body.get("new_room_user_id")
    if new_user is not None:
        if not isinstance(new_user, str) or not is_valid_user_id(new_user):
            raise MatrixError(400, "M_INVALID_PARAM", "new_room_user_id must be a user ID")
        if new_user.split(":", 1)[1] != get_server_name():
            raise MatrixError(400, "M_INVALID_PARAM", f"User must be our own: {new_user}")
    texts: dict[str, str] = {}
    for name, default in (("room_name", DEFAULT_ROOM_NAME), ("message", DEFAULT_MESSAGE)):
        value = body.get(name, default)
        if not isinstance(value, str):
            raise MatrixError(400, "M_BAD_JSON", f"Param '{name}' must be a string")
        texts[name] = value
    flags: dict[str, bool] = {}
    for flag, fallback in (("block", False), ("purge", True), ("force_purge", False)):
        given = body.get(flag, fallback)
        if not isinstance(given, bool):
            raise MatrixError(400, "M_BAD_JSON", f"Param '{flag}' must be a boolean, if given")
        flags[flag] = given
    request = DeleteRoomRequest(
        room_id=room_id, new_room_user_id=new_user, room_name=texts["room_name"], message=texts["message"],
        block=flags["block"], purge=flags["purge"], force_purge=flags["force_purge"],
    )  # fmt: skip
    if room_store.get_room(room_id) is None and not request.block:
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown room {room_id}: only blocking it is possible")
    return request


def _leave(room_id: str, user_id: str) -> None:
    send_local_event(
        room_id=room_id, sender=user_id, event_type="m.room.member", content={"membership": "leave"},
        state_key=user_id,
    )  # fmt: skip


def _replacement_room(request: DeleteRoomRequest) -> str:
    """The room local members are moved into: its creator is admin, others may not speak (-10)."""
    assert request.new_room_user_id is not None
    room_id, _ = create_room(
        RoomSpec(
            creator=request.new_room_user_id,
            room_version=settings.DAGMA.default_room_version,
            preset="private_chat",
            name=request.room_name,
            power_level_content_override={"users_default": -10},
        )
    )
    send_local_event(
        room_id=room_id, sender=request.new_room_user_id, event_type="m.room.message",
        content={"msgtype": "m.text", "body": request.message},
    )  # fmt: skip
    return room_id


def do_delete_room(
    request: DeleteRoomRequest, *, actor: Actor, progress: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Shut a room down as Synapse does: block (optional), move local members out (into a new
    room with a message, if asked), move or drop local aliases, unpublish, then purge (optional).
    Returns ``shutdown_room``: kicked_users, failed_to_kick_users, local_aliases, new_room_id."""
    shutdown: dict[str, Any] = {
        "kicked_users": [],
        "failed_to_kick_users": [],
        "local_aliases": [],
        "new_room_id": None,
    }
    if request.block:
        store.block_room(room_id=request.room_id, user_id=actor.user_id, ts=now_ms())
    room = room_store.get_room(request.room_id)
    if room is None:  # only blocked (Synapse v1 allows blocking an unknown room)
        record_audit(actor=actor, action="delete_room", target=request.room_id, params=request.as_json(),
                     counts={"blocked_only": 1})  # fmt: skip
        return shutdown
    if request.new_room_user_id is not None:
        shutdown["new_room_id"] = _replacement_room(request)
    for user_id in store.get_room_member_ids(room, ("join", "invite", "knock")):
        if user_id.split(":", 1)[1] != get_server_name():
            continue
        try:
            _leave(request.room_id, user_id)
            if shutdown["new_room_id"] is not None and user_id != request.new_room_user_id:
                new_room = shutdown["new_room_id"]
                send_local_event(room_id=new_room, sender=request.new_room_user_id or "", event_type="m.room.member",
                                 content={"membership": "invite"}, state_key=user_id)  # fmt: skip
                send_local_event(room_id=new_room, sender=user_id, event_type="m.room.member",
                                 content={"membership": "join"}, state_key=user_id)  # fmt: skip
            shutdown["kicked_users"].append(user_id)
        except MatrixError:
            shutdown["failed_to_kick_users"].append(user_id)
    if shutdown["new_room_id"] is not None:
        shutdown["local_aliases"] = directory_store.move_aliases(
            from_room_id=request.room_id, to_room_id=shutdown["new_room_id"]
        )
    else:
        shutdown["local_aliases"] = store.delete_aliases(request.room_id)
    room = room_store.get_room(request.room_id)
    assert room is not None
    if room.is_public:
        room_store.set_room_public(room, False)
    if progress is not None:
        progress({"shutdown_room": shutdown})
    counts: dict[str, Any] = {
        "kicked": len(shutdown["kicked_users"]),
        "failed_to_kick": len(shutdown["failed_to_kick_users"]),
    }
    if request.purge:
        still = store.members_still_joined(room, local=True)
        if still and not request.force_purge:
            error = f"Users are still joined to this room: {', '.join(sorted(still))}"
            record_audit(actor=actor, action="delete_room", target=request.room_id, params=request.as_json(),
                         counts=counts, result="failed", error=error)  # fmt: skip
            raise MatrixError(400, "M_UNKNOWN", error)
        counts.update(purge_room(request.room_id))
    record_audit(
        actor=actor, action="delete_room", target=request.room_id, params=request.as_json(), counts=counts
    )
    return shutdown


def purge_room(room_id: str) -> dict[str, int]:
    """Remove every trace of a room from the database (its events in batches, then the rest)."""
    events = 0
    while True:
        with transaction.atomic():
            room_store.lock_room_for_writing(room_id)
            room = room_store.get_room(room_id)
            if room is None:
                return {"events": events}
            done = store.delete_room_events_batch(room)
            events += done
        if done == 0:
            break
    with transaction.atomic():
        room_store.lock_room_for_writing(room_id)
        room = room_store.get_room(room_id)
        if room is not None:
            store.delete_room_rows(room)
    return {"events": events}


def run_delete_room_job(*, job: AdminJob, progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Admin job ``delete_room`` (Delete Room API v2): params are the parsed request."""
    params = dict(job.params)
    via = str(params.pop("via", "api"))
    request = DeleteRoomRequest(**params)
    shutdown = do_delete_room(request, actor=Actor(user_id=job.created_by, via=via), progress=progress)
    return {"shutdown_room": shutdown}


def delete_status_json(job: AdminJob) -> dict[str, Any]:
    """One task of Synapse's ``delete_status`` answers."""
    shutdown = (job.result or {}).get("shutdown_room") or (job.progress or {}).get("shutdown_room") or {
        "kicked_users": [], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": None,
    }  # fmt: skip
    out: dict[str, Any] = {"delete_id": job.job_id, "room_id": job.target, "status": job.status,
                           "shutdown_room": shutdown}  # fmt: skip
    if job.status == "failed":
        out["error"] = job.error
    return out


# --------------------------------------------------------------------------- room admin, extremities


def check_make_room_admin(*, room_id_or_alias: str, user_id: Any, admin_user_id: str, actor: Actor) -> None:
    """``POST /_synapse/admin/v1/rooms/<room>/make_room_admin``: give ``user_id`` (default the
    calling admin) the highest power a local member holds, sent by that member; invite the user
    if they are not in the room and it is not public."""
    target = admin_user_id if user_id is None else user_id
    if not isinstance(target, str) or not is_valid_user_id(target):
        raise MatrixError(400, "M_INVALID_PARAM", "user_id must be a user ID")
    if target.split(":", 1)[1] != get_server_name():
        raise MatrixError(400, "M_INVALID_PARAM", "Only local users can be admins of rooms")
    room_id = resolve_room_id_or_alias(room_id_or_alias)
    room = access_room(room_id)
    state = state_store.get_current_state_events(room)
    local_members = [
        skey for (etype, skey), ev in state.items()
        if etype == "m.room.member" and ev.membership == "join" and skey.split(":", 1)[1] == get_server_name()
    ]  # fmt: skip
    if not local_members:
        raise MatrixError(400, "M_UNKNOWN", "No local admin user in room")
    admin = max(local_members, key=lambda u: get_user_power_level(u, state))
    admin_level = get_user_power_level(admin, state)
    pl_event = state.get(("m.room.power_levels", ""))
    if pl_event is None:
        raise MatrixError(400, "M_UNKNOWN", "No power levels in the room: nobody to give power to")
    content = dict(pl_event.content)
    users = dict(content.get("users") or {})
    finite = [v for v in users.values() if isinstance(v, int) and not isinstance(v, bool)]
    level = int(admin_level) if admin_level != float("inf") else max([100, *finite])
    if get_user_power_level(target, state) < level:
        users[target] = level
        content["users"] = users
        try:
            send_local_event(room_id=room_id, sender=admin, event_type="m.room.power_levels", content=content,
                             state_key="")  # fmt: skip
        except MatrixError as exc:
            raise MatrixError(
                400,
                "M_UNKNOWN",
                f"No local admin user in room with power to update power levels: {exc.error}",
            ) from None
    member = state.get(("m.room.member", target))
    join_rule = (state.get(("m.room.join_rules", "")) or pl_event).content.get("join_rule")
    if (member is None or member.membership != "join") and join_rule != "public":
        with contextlib.suppress(MatrixError):
            send_local_event(room_id=room_id, sender=admin, event_type="m.room.member",
                             content={"membership": "invite"}, state_key=target)  # fmt: skip
    record_audit(actor=actor, action="make_room_admin", target=room_id, params={"user_id": target})


def get_forward_extremities_json(room_id_or_alias: str) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/rooms/<room>/forward_extremities``."""
    room = access_room(resolve_room_id_or_alias(room_id_or_alias))
    results = [
        {"event_id": e.event_id, "state_group": e.state_group, "depth": e.depth, "received_ts": e.received_ts}
        for e in store.get_extremity_facts(room)
    ]
    return {"count": len(results), "results": results}


def check_delete_forward_extremities(*, room_id_or_alias: str, actor: Actor) -> dict[str, int]:
    """``DELETE .../forward_extremities``: keep only the newest (highest stream position), as Synapse.

    The current state stays as resolved; the room's next event, built on the one kept
    extremity, settles it (Synapse's behaviour too, synapse#1760).
    """
    room_id = resolve_room_id_or_alias(room_id_or_alias)
    access_room(room_id)
    with transaction.atomic():
        room_store.lock_room_for_writing(room_id)
        room = room_store.get_room_for_update(room_id)
        assert room is not None
        extremities = get_forward_extremities(room)
        dropped: list[str] = []
        if len(extremities) > 1:
            streams = store.get_event_stream_orderings([e.nid for e in extremities])
            keep = max(extremities, key=lambda e: (streams.get(e.nid) or 0, e.depth))
            store.keep_only_extremity(room, keep)
            dropped = [e.event_id for e in extremities if e.nid != keep.nid]
    # The dropped events stay childless for good (their branches are abandoned): their IDs
    # are kept in the audit entry, for whoever later wonders why.
    record_audit(actor=actor, action="delete_forward_extremities", target=room_id, params={"dropped": dropped},
                 counts={"deleted": len(dropped)})  # fmt: skip
    return {"deleted": len(dropped)}


# --------------------------------------------------------------------------- acting in a room as the server


def _most_powerful_local_member(room: Any) -> tuple[str, dict[Any, Any]]:
    state = state_store.get_current_state_events(room)
    server = get_server_name()
    local = [
        skey for (etype, skey), ev in state.items()
        if etype == "m.room.member" and ev.membership == "join" and skey.split(":", 1)[-1] == server
    ]  # fmt: skip
    if not local:
        raise MatrixError(400, "M_UNKNOWN", "No local member in the room can act for the server")
    return max(local, key=lambda u: (get_user_power_level(u, state), u)), state


def check_admin_redact_event(*, room_id: str, event_id: str, reason: str | None, actor: Actor) -> str:
    """Redact an event for the server admins: sent by the room's most powerful local member
    (who must hold the redact level: the event pipeline checks it, as for any redaction)."""
    room = access_room(room_id)
    sender, _state = _most_powerful_local_member(room)
    content: dict[str, Any] = {"reason": reason} if reason else {}
    try:
        sent = send_local_event(room_id=room_id, sender=sender, event_type="m.room.redaction", content=content,
                                redacts=event_id)  # fmt: skip
    except MatrixError as exc:
        record_audit(actor=actor, action="redact_event", target=event_id, params={"room_id": room_id},
                     result="failed", error=exc.error)  # fmt: skip
        raise
    record_audit(
        actor=actor, action="redact_event", target=event_id, params={"room_id": room_id, "by": sender}
    )
    return sent.event.event_id


def check_remove_from_room(*, room_id: str, user_id: str, reason: str | None, actor: Actor) -> None:
    """Kick ``user_id`` from the room, sent by its most powerful local member (kick level needed)."""
    if not is_valid_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Not a user ID")
    room = access_room(room_id)
    sender, _state = _most_powerful_local_member(room)
    content: dict[str, Any] = {"membership": "leave"}
    if reason:
        content["reason"] = reason
    send_local_event(
        room_id=room_id, sender=sender, event_type="m.room.member", content=content, state_key=user_id
    )
    record_audit(
        actor=actor, action="remove_from_room", target=room_id, params={"user_id": user_id, "by": sender}
    )


# --------------------------------------------------------------------------- the console's room page


def get_power_table(room_id: str) -> dict[str, Any]:
    """Who may do what: each action's required level and the users with an explicit level."""
    room = access_room(room_id)
    state = state_store.get_current_state_events(room)
    pl = state.get(("m.room.power_levels", ""))
    content = dict(pl.content) if pl is not None else {}
    actions = [
        (name, content.get(name, default))
        for name, default in (("ban", 50), ("kick", 50), ("redact", 50), ("invite", 0), ("state_default", 50),
                              ("events_default", 0), ("users_default", 0))
    ]  # fmt: skip
    events = sorted((str(k), v) for k, v in (content.get("events") or {}).items())
    create = state.get(("m.room.create", ""))
    creators: list[str] = []
    version = get_room_version(room.room_version, require_supported=False)
    if create is not None and version.privileged_creators:
        extra = create.content.get("additional_creators")
        creators = [
            create.sender,
            *[u for u in (extra if isinstance(extra, list) else []) if isinstance(u, str)],
        ]
    users = sorted(
        ((str(u), v) for u, v in (content.get("users") or {}).items()),
        key=lambda x: (-int(x[1]) if isinstance(x[1], int) else 0, x[0]),
    )
    return {"actions": actions, "events": events, "users": users, "creators": creators}


def get_room_page(room_id: str) -> dict[str, Any]:
    """Everything the console's room page shows (besides the actions' forms)."""
    room = access_room(room_id)
    details = get_room_details(room_id)
    state = sorted(state_store.get_current_state_events(room).items())
    now = now_ms()
    state_rows = [
        {"type": etype, "state_key": skey, "sender": ev.sender, "event_id": ev.event_id,
         "content": json.dumps(ev.content, sort_keys=True, ensure_ascii=False)[:300],
         "raw": json.dumps(dict(ev.pdu), indent=2, sort_keys=True, ensure_ascii=False)}
        for (etype, skey), ev in state
    ]  # fmt: skip
    extremities = [
        {
            "event_id": e.event_id,
            "depth": e.depth,
            "state_group": e.state_group,
            "age_ms": max(0, now - e.received_ts),
        }
        for e in store.get_extremity_facts(room)
    ]
    return {
        "details": details,
        "state": state_rows,
        "members": store.get_room_member_rows(room),
        "power": get_power_table(room_id),
        "aliases": store.get_local_aliases(room_id),
        "extremities": extremities,
        "block": get_block_status(room_id),
    }


def get_delete_preview(request: DeleteRoomRequest) -> dict[str, Any]:
    """What deleting a room as asked would do (nothing changes): the local members removed,
    the remote ones left alone, the local aliases moved or dropped, and with ``purge`` the
    rows removed from the database."""
    room = access_room(request.room_id)
    server = get_server_name()
    members = store.get_room_member_ids(room, ("join", "invite", "knock"))
    return {
        "request": request.as_json(),
        "local_members": [u for u in members if u.split(":", 1)[-1] == server],
        "remote_members": [u for u in members if u.split(":", 1)[-1] != server],
        "aliases": store.get_local_aliases(request.room_id),
        "published": room.is_public,
        "purged": store.count_room_rows(room) if request.purge else None,
    }

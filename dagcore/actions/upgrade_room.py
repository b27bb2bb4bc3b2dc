"""Room upgrades: replace a room by a new one of another room version.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-behaviour-16
("Room Upgrades", server behaviour):

1. Check the user may send ``m.room.tombstone`` in the old room.
2. Create the new room with ``predecessor`` in its create content, copying the
   create content's ``type`` and ``m.federate``.
3. Copy the recommended state (server ACLs, encryption, name, avatar, topic,
   guest access, history visibility, join rules, power levels) — and bans.
4. Move local aliases and the canonical alias to the new room; republish it if
   the old one was published.
5. Send the tombstone in the old room and restrict its power levels so only
   moderators can still talk or invite there.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.persist_event import send_local_event
from dagcore.http.errors import MatrixError, not_in_room
from dagcore.models import User
from dagcore.protocol.auth_rules import get_required_level, get_user_power_level
from dagcore.protocol.events import Event, StateKey
from dagcore.protocol.identifiers import is_valid_user_id
from dagcore.protocol.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from dagcore.store import directory as directory_store
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store

#: The spec's recommended state to transfer (power levels are handled separately).
TRANSFERRED_STATE = (
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
)
#: Copied from the old create event's content when present.
CREATE_KEYS_KEPT = ("type", "m.federate")


def _state_of_old_room(room: Any) -> dict[StateKey, Event]:
    return state_store.get_current_state_events(room)


def _power_levels_for_new_room(
    old_pl: dict[str, Any], *, new_version: RoomVersion, new_creators: set[str], upgrader: str
) -> dict[str, Any]:
    """The old room's levels, with creators removed from ``users`` in v12+ (they have infinite power)."""
    content = copy.deepcopy(old_pl)
    users = content.get("users")
    if isinstance(users, dict) and new_version.privileged_creators:
        content["users"] = {u: lvl for u, lvl in users.items() if u not in new_creators}
    return content


def _needed_level(pl: dict[str, Any]) -> int:
    """The highest level any state in the new room could need while it is being set up."""
    levels = [100, pl.get("state_default", 50)]
    events = pl.get("events")
    if isinstance(events, dict):
        levels.extend(v for v in events.values() if isinstance(v, int) and not isinstance(v, bool))
    return max(v for v in levels if isinstance(v, int) and not isinstance(v, bool))


def check_upgrade_room(*, user: User, room_id: str, new_version: Any, additional_creators: Any = None) -> str:
    """Upgrade ``room_id`` to ``new_version``; returns the replacement room's ID."""
    if not isinstance(new_version, str):
        raise MatrixError(400, "M_BAD_JSON", "new_version must be a string")
    try:
        version = get_room_version(new_version)
    except UnsupportedRoomVersion:
        raise MatrixError(
            400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version: {new_version!r}"
        ) from None
    extra_creators: list[str] = []
    if additional_creators is not None:
        if not isinstance(additional_creators, list) or not all(
            isinstance(u, str) and is_valid_user_id(u) for u in additional_creators
        ):
            raise MatrixError(400, "M_INVALID_PARAM", "additional_creators must be a list of user IDs")
        if version.privileged_creators:
            extra_creators = [u for u in dict.fromkeys(additional_creators) if u != user.user_id]

    room = room_store.get_room(room_id)
    if room is None:
        raise not_in_room()
    state = _state_of_old_room(room)
    member = state.get(("m.room.member", user.user_id))
    if member is None or member.membership != "join":
        raise MatrixError(403, "M_FORBIDDEN", "You are not joined to this room")
    user_level = get_user_power_level(user.user_id, state)
    if user_level < get_required_level("m.room.tombstone", is_state=True, state=state):
        raise MatrixError(403, "M_FORBIDDEN", "You do not have the power to upgrade this room")
    if ("m.room.tombstone", "") in state:
        replacement = state[("m.room.tombstone", "")].content.get("replacement_room")
        if isinstance(replacement, str):
            raise MatrixError(400, "M_UNKNOWN", f"This room has already been upgraded to {replacement}")

    old_create = state[("m.room.create", "")]
    creation_content: dict[str, Any] = {
        k: old_create.content[k] for k in CREATE_KEYS_KEPT if k in old_create.content
    }
    last = event_store.get_forward_extremities(room)
    predecessor: dict[str, Any] = {"room_id": room_id}
    if last:
        # Deprecated in v1.16 but still read by older clients.
        predecessor["event_id"] = last[0].event_id
    creation_content["predecessor"] = predecessor
    if extra_creators:
        creation_content["additional_creators"] = extra_creators
    new_creators = {user.user_id, *extra_creators}

    old_pl_event = state.get(("m.room.power_levels", ""))
    old_pl = dict(old_pl_event.content) if old_pl_event is not None else {}
    final_pl = _power_levels_for_new_room(
        old_pl, new_version=version, new_creators=new_creators, upgrader=user.user_id
    )
    setup_pl = copy.deepcopy(final_pl)
    if not version.privileged_creators:
        # While copying state the upgrader needs enough power for all of it; the
        # final levels (their own old level) are restored once the state is in.
        users = dict(setup_pl.get("users") or {})
        users[user.user_id] = max(
            _needed_level(final_pl), int(user_level) if user_level != float("inf") else 100
        )
        setup_pl["users"] = users
        final_users = dict(final_pl.get("users") or {})
        final_users[user.user_id] = int(user_level) if user_level != float("inf") else 100
        final_pl["users"] = final_users

    initial_state = [
        (etype, skey, dict(event.content))
        for (etype, skey), event in state.items()
        if etype in TRANSFERRED_STATE
    ]
    canonical = state.get(("m.room.canonical_alias", ""))
    try:
        new_room_id, _ = create_room(
            RoomSpec(
                creator=user.user_id,
                room_version=version.identifier,
                preset="private_chat",
                creation_content=creation_content,
                power_level_content_override=setup_pl,
                initial_state=initial_state,
                creator_member_content={
                    k: member.content[k] for k in ("displayname", "avatar_url") if k in member.content
                },
            )
        )
    except MatrixError as exc:
        raise MatrixError(exc.status, exc.errcode, f"Could not set up the new room: {exc.error}") from None

    if setup_pl != final_pl:
        send_local_event(
            room_id=new_room_id,
            sender=user.user_id,
            event_type="m.room.power_levels",
            content=final_pl,
            state_key="",
        )
    # Bans carry over (spec: "should transfer ... bans"); others' memberships do not.
    for (etype, skey), event in state.items():
        if etype == "m.room.member" and event.membership == "ban" and skey not in new_creators:
            ban: dict[str, Any] = {"membership": "ban"}
            if isinstance(event.content.get("reason"), str):
                ban["reason"] = event.content["reason"]
            # A ban we may not repeat is not worth failing the upgrade for.
            with contextlib.suppress(MatrixError):
                send_local_event(
                    room_id=new_room_id,
                    sender=user.user_id,
                    event_type="m.room.member",
                    content=ban,
                    state_key=skey,
                )

    moved = directory_store.move_aliases(from_room_id=room_id, to_room_id=new_room_id)
    if canonical is not None and (canonical.content.get("alias") or canonical.content.get("alt_aliases")):
        local = set(moved)
        content = {
            k: v
            for k, v in {
                "alias": canonical.content.get("alias") if canonical.content.get("alias") in local else None,
                "alt_aliases": [a for a in canonical.content.get("alt_aliases") or [] if a in local] or None,
            }.items()
            if v is not None
        }
        if content:
            _try_send(new_room_id, user.user_id, "m.room.canonical_alias", content)
            _try_send(room_id, user.user_id, "m.room.canonical_alias", {})
    if room.is_public:
        new_room = room_store.get_room(new_room_id)
        if new_room is not None:
            room_store.set_room_public(new_room, True)
        room_store.set_room_public(room, False)

    send_local_event(
        room_id=room_id,
        sender=user.user_id,
        event_type="m.room.tombstone",
        content={"body": "This room has been replaced", "replacement_room": new_room_id},
        state_key="",
    )
    _restrict_old_room(room_id, user.user_id, old_pl)
    return new_room_id


def _try_send(room_id: str, sender: str, event_type: str, content: dict[str, Any]) -> None:
    """Best effort: the upgrader may send tombstones but not everything else."""
    with contextlib.suppress(MatrixError):
        send_local_event(room_id=room_id, sender=sender, event_type=event_type, content=content, state_key="")


def _restrict_old_room(room_id: str, user_id: str, old_pl: dict[str, Any]) -> None:
    """spec: raise ``events_default`` and ``invite`` to at least 50 (above ``users_default``) in the old room."""
    users_default = old_pl.get("users_default", 0)
    if not isinstance(users_default, int) or isinstance(users_default, bool):
        users_default = 0
    restricted_level = max(50, users_default + 1)
    content = copy.deepcopy(old_pl)
    changed = False
    for key in ("events_default", "invite"):
        current = content.get(key, 0)
        if not isinstance(current, int) or current < restricted_level:
            content[key] = restricted_level
            changed = True
    if changed:
        _try_send(room_id, user_id, "m.room.power_levels", content)

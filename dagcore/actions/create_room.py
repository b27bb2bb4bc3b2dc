"""Creating a room: the create event, then the events ``/createRoom`` implies, in the spec's order.

Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3createroom
(order: create, creator's join, power levels, canonical alias, preset events,
initial_state, name, topic, invites).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagcore.actions import remote_membership
from dagcore.actions.persist_event import PersistedEvent, create_room_with_create_event, send_local_event
from dagcore.actions.send_event import check_content_size
from dagcore.http.errors import MatrixError
from dagcore.models import User
from dagcore.protocol.canonical_json import JsonError, check_event_values
from dagcore.protocol.identifiers import is_valid_room_alias, is_valid_user_id
from dagcore.protocol.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from dagcore.server_keys import get_server_name
from dagcore.store import accounts as account_store
from dagcore.store import rooms as room_store

PRESETS = ("private_chat", "public_chat", "trusted_private_chat")
#: Each initial state event and each invite is one more event written while the client waits:
#: bounded, far above what clients send (Element sends a handful).
MAX_INITIAL_STATE = 100
MAX_INVITES = 100


@dataclass
class RoomSpec:
    """What the creator asked for (already validated by the caller)."""

    creator: str
    room_version: str
    preset: str = "private_chat"
    creation_content: dict[str, Any] = field(default_factory=dict)
    power_level_content_override: dict[str, Any] | None = None
    initial_state: Sequence[tuple[str, str, dict[str, Any]]] = ()
    name: str | None = None
    topic: str | None = None
    canonical_alias: str | None = None
    invite: Sequence[str] = ()
    is_direct: bool = False
    creator_member_content: dict[str, Any] = field(default_factory=dict)


def default_power_levels(
    room_version: RoomVersion, creator: str, preset: str, invitees: Iterable[str]
) -> dict[str, Any]:
    """Synapse-compatible defaults, so rooms look the same to clients and bridges."""
    users: dict[str, int] = {}
    if not room_version.privileged_creators:
        # v12: creators have infinite power and must not be listed (MSC4289).
        users[creator] = 100
    if preset == "trusted_private_chat" and not room_version.privileged_creators:
        # v12: invitees become additional creators instead (spec: createRoom, v1.16).
        for user in invitees:
            users[user] = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            # v12 tombstones need more than an ordinary admin (MSC4289: upgrades are for creators).
            "m.room.tombstone": 150 if room_version.privileged_creators else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0 if preset in ("private_chat", "trusted_private_chat") else 50,
        "historical": 100,
    }


def _preset_events(preset: str) -> list[tuple[str, str, dict[str, Any]]]:
    join_rule = "public" if preset == "public_chat" else "invite"
    events: list[tuple[str, str, dict[str, Any]]] = [
        ("m.room.join_rules", "", {"join_rule": join_rule}),
        ("m.room.history_visibility", "", {"history_visibility": "shared"}),
    ]
    if preset == "public_chat":
        events.append(("m.room.guest_access", "", {"guest_access": "forbidden"}))
    else:
        events.append(("m.room.guest_access", "", {"guest_access": "can_join"}))
    return events


def _persist_create_event(spec: RoomSpec, room_version: RoomVersion) -> str:
    content: dict[str, Any] = dict(spec.creation_content)
    content["room_version"] = room_version.identifier
    if room_version.implicit_room_creator:
        content.pop("creator", None)
    else:
        content["creator"] = spec.creator
    room_id, _ = create_room_with_create_event(
        room_version=room_version, sender=spec.creator, content=content
    )
    return room_id


def create_room(
    spec: RoomSpec, *, before_alias: Callable[[str], None] | None = None
) -> tuple[str, list[PersistedEvent]]:
    """Create the room; returns its ID and the events sent after the create event.

    The steps are separate transactions (as in Synapse): a failure half-way
    leaves a usable room owned by the creator, never a corrupt one.
    """
    room_version = get_room_version(spec.room_version)
    room_id = _persist_create_event(spec, room_version)
    sent: list[PersistedEvent] = []

    def send(event_type: str, state_key: str, content: dict[str, Any]) -> None:
        sent.append(
            send_local_event(
                room_id=room_id,
                sender=spec.creator,
                event_type=event_type,
                content=content,
                state_key=state_key,
            )
        )

    send("m.room.member", spec.creator, {"membership": "join", **spec.creator_member_content})
    power_levels = default_power_levels(room_version, spec.creator, spec.preset, spec.invite)
    if spec.power_level_content_override:
        for key, value in spec.power_level_content_override.items():
            power_levels[key] = copy.deepcopy(value)
    send("m.room.power_levels", "", power_levels)
    if spec.canonical_alias:
        if before_alias is not None:
            before_alias(room_id)
        send("m.room.canonical_alias", "", {"alias": spec.canonical_alias})
    given = {(t, k) for t, k, _ in spec.initial_state}
    for event_type, state_key, content in _preset_events(spec.preset):
        if (event_type, state_key) not in given:
            send(event_type, state_key, content)
    for event_type, state_key, content in spec.initial_state:
        send(event_type, state_key, content)
    if spec.name is not None:
        send("m.room.name", "", {"name": spec.name})
    if spec.topic is not None:
        # v1.15: the topic also as an m.topic content block (plain text).
        send(
            "m.room.topic",
            "",
            {"topic": spec.topic, "m.topic": {"m.text": [{"body": spec.topic, "mimetype": "text/plain"}]}},
        )
    server_name = get_server_name()
    for user_id in spec.invite:
        invite_content: dict[str, Any] = {"membership": "invite"}
        if spec.is_direct:
            invite_content["is_direct"] = True
        if user_id.split(":", 1)[1] == server_name:
            send("m.room.member", user_id, invite_content)
            continue
        # Another server's user: their server signs the invite first (federation ``invite``).
        room = room_store.get_room(room_id)
        assert room is not None
        remote_membership.do_invite_remote_user(
            room=room, inviter=spec.creator, invitee=user_id, content=invite_content
        )
    return room_id, sent


# --------------------------------------------------------------------------- /createRoom


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", msg)


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(f"{key} must be a string")
    return value


def _optional_object(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise _bad(f"{key} must be an object")
    return value


def _check_content_values(content: Any, room_version: RoomVersion, what: str) -> None:
    try:
        check_event_values(content, strict=room_version.strict_canonicaljson)
    except JsonError as exc:
        raise MatrixError(400, exc.errcode, f"{what}: {exc}") from None


def _parse_invitees(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(u, str) and is_valid_user_id(u) for u in value):
        raise _bad("invite must be a list of user IDs")
    if len(value) > MAX_INVITES:
        raise _bad(f"At most {MAX_INVITES} users can be invited when creating a room")
    server_name = get_server_name()
    invitees = list(dict.fromkeys(value))
    for user_id in invitees:
        if user_id.split(":", 1)[1] != server_name:
            continue  # invited through their server once the room exists
        if account_store.get_user(user_id) is None:
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown user {user_id}")
    return invitees


def _parse_initial_state(value: Any, room_version: RoomVersion) -> list[tuple[str, str, dict[str, Any]]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad("initial_state must be a list")
    if len(value) > MAX_INITIAL_STATE:
        raise _bad(f"initial_state may hold at most {MAX_INITIAL_STATE} events")
    out: list[tuple[str, str, dict[str, Any]]] = []
    for item in value:
        if not isinstance(item, dict):
            raise _bad("initial_state entries must be objects")
        etype, skey, content = item.get("type"), item.get("state_key", ""), item.get("content")
        if not isinstance(etype, str) or not etype or len(etype.encode()) > 255:
            raise _bad("initial_state entries need a type")
        if not isinstance(skey, str) or len(skey.encode()) > 255:
            raise _bad("initial_state state_key must be a string")
        if not isinstance(content, dict):
            raise _bad("initial_state entries need a content object")
        if etype == "m.room.create":
            raise _bad("initial_state cannot hold m.room.create (use creation_content)")
        _check_content_values(content, room_version, "initial_state")
        check_content_size(event_type=etype, state_key=skey, content=content)
        out.append((etype, skey, content))
    return out


def check_create_room(*, user: User, body: dict[str, Any]) -> str:
    """Validate a /createRoom request, create the room, its alias and directory entry; returns the room ID.

    Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3createroom
    """
    from django.conf import settings

    from dagcore.actions.directory import is_publication_allowed
    from dagcore.store import directory as directory_store

    visibility = body.get("visibility", "private")
    if visibility not in ("public", "private"):
        raise _bad("visibility must be 'public' or 'private'")
    preset = body.get("preset")
    if preset is None:
        preset = "public_chat" if visibility == "public" else "private_chat"
    if preset not in PRESETS:
        raise _bad(f"preset must be one of {', '.join(PRESETS)}")
    version_id = body.get("room_version", settings.DAGMA.default_room_version)
    try:
        room_version = get_room_version(version_id)
    except UnsupportedRoomVersion:
        raise MatrixError(
            400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version: {version_id!r}"
        ) from None
    name = _optional_str(body, "name")
    topic = _optional_str(body, "topic")
    is_direct = body.get("is_direct", False)
    if not isinstance(is_direct, bool):
        raise _bad("is_direct must be a boolean")
    if body.get("invite_3pid"):
        raise MatrixError(400, "M_UNRECOGNIZED", "Third-party invites are not supported")
    invitees = _parse_invitees(body.get("invite"))
    initial_state = _parse_initial_state(body.get("initial_state"), room_version)
    creation_content = dict(_optional_object(body, "creation_content") or {})
    _check_content_values(creation_content, room_version, "creation_content")
    check_content_size(event_type="m.room.create", state_key="", content=creation_content)
    creation_content.pop("room_version", None)
    creation_content.pop("creator", None)
    if room_version.privileged_creators:
        extra = creation_content.get("additional_creators", [])
        if not isinstance(extra, list) or not all(isinstance(u, str) and is_valid_user_id(u) for u in extra):
            raise _bad("creation_content.additional_creators must be a list of user IDs")
        if preset == "trusted_private_chat":
            extra = [*extra, *invitees]
        extra = [u for u in dict.fromkeys(extra) if u != user.user_id]
        if extra:
            creation_content["additional_creators"] = extra
        else:
            creation_content.pop("additional_creators", None)
    pl_override = _optional_object(body, "power_level_content_override")
    if pl_override is not None:
        _check_content_values(pl_override, room_version, "power_level_content_override")
        check_content_size(event_type="m.room.power_levels", state_key="", content=pl_override)
    for key, value in (("name", name), ("topic", topic)):
        if value is not None and len(value.encode()) > 32_768:
            raise MatrixError(413, "M_TOO_LARGE", f"{key} is too long")

    alias: str | None = None
    alias_name = _optional_str(body, "room_alias_name")
    if alias_name is not None:
        alias = f"#{alias_name}:{get_server_name()}"
        if (
            not alias_name
            or ":" in alias_name
            or any(c.isspace() for c in alias_name)
            or not is_valid_room_alias(alias)
        ):
            raise _bad("room_alias_name is not a valid alias localpart")
        if directory_store.get_alias(alias) is not None:
            raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
    if (
        visibility == "public"
        and not user.is_admin
        and not is_publication_allowed(user_id=user.user_id, room_id="", aliases=[alias] if alias else [])
    ):
        raise MatrixError(403, "M_FORBIDDEN", "Not allowed to publish rooms to the directory")

    profile: dict[str, Any] = {}
    if user.displayname:
        profile["displayname"] = user.displayname
    if user.avatar_url:
        profile["avatar_url"] = user.avatar_url
    spec = RoomSpec(
        creator=user.user_id,
        room_version=room_version.identifier,
        preset=preset,
        creation_content=creation_content,
        power_level_content_override=pl_override,
        initial_state=initial_state,
        name=name,
        topic=topic,
        canonical_alias=alias,
        invite=invitees,
        is_direct=is_direct,
        creator_member_content=profile,
    )
    room_id, _ = create_room(spec, before_alias=_alias_reserver(alias, user.user_id))
    if visibility == "public":
        room = room_store.get_room(room_id)
        if room is not None:
            room_store.set_room_public(room, True)
    return room_id


def _alias_reserver(alias: str | None, creator: str) -> Callable[[str], None] | None:
    """Create the alias row just before the canonical alias event names it."""
    if alias is None:
        return None

    def reserve(room_id: str) -> None:
        from dagcore.store import directory as directory_store

        if not directory_store.insert_alias(alias=alias, room_id=room_id, creator=creator):
            raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")

    return reserve

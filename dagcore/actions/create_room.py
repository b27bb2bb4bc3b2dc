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
from dagcore.actions.directory import is_publication_allowed
from dagcore.actions.persist_event import PersistedEvent, create_room_with_create_event, send_local_event
from dagcore.http.errors import MatrixError
from dagcore.models import User
from dagcore.protocol.room_versions import RoomVersion, get_room_version
from dagcore.server_keys import get_server_name
from dagcore.store import accounts as account_store
from dagcore.store import directory as directory_store
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


@dataclass(frozen=True)
class CreateRoomRequest:
    """A ``/createRoom`` body, its shape checked (``tribune.inputs.parse_create_room``): what
    is left to check needs the database (invitees, the alias, publication rights)."""

    visibility: str
    preset: str
    room_version: RoomVersion
    name: str | None = None
    topic: str | None = None
    is_direct: bool = False
    #: Valid user IDs, without duplicates, at most ``MAX_INVITES``.
    invite: tuple[str, ...] = ()
    #: ``(type, state_key, content)``, values and sizes checked for the room version.
    initial_state: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    #: Without ``room_version`` and ``creator`` (the server sets them); a valid
    #: ``additional_creators`` list where the room version has them.
    creation_content: dict[str, Any] = field(default_factory=dict)
    power_level_content_override: dict[str, Any] | None = None
    #: The full alias ``#{room_alias_name}:{server}``, valid.
    room_alias: str | None = None


def _check_invitees(invitees: Sequence[str]) -> None:
    server_name = get_server_name()
    for user_id in invitees:
        if user_id.split(":", 1)[1] != server_name:
            continue  # invited through their server once the room exists
        if account_store.get_user(user_id) is None:
            raise MatrixError(404, "M_NOT_FOUND", f"Unknown user {user_id}")


def check_create_room(*, user: User, request: CreateRoomRequest) -> str:
    """Create the room, its alias and directory entry from a parsed request; returns the room ID.

    Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3createroom
    """
    room_version = request.room_version
    _check_invitees(request.invite)
    creation_content = dict(request.creation_content)
    if room_version.privileged_creators:
        extra = list(creation_content.get("additional_creators", []))
        if request.preset == "trusted_private_chat":
            extra = [*extra, *request.invite]
        extra = [u for u in dict.fromkeys(extra) if u != user.user_id]
        if extra:
            creation_content["additional_creators"] = extra
        else:
            creation_content.pop("additional_creators", None)
    alias = request.room_alias
    if alias is not None and directory_store.get_alias(alias) is not None:
        raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
    if (
        request.visibility == "public"
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
        preset=request.preset,
        creation_content=creation_content,
        power_level_content_override=request.power_level_content_override,
        initial_state=request.initial_state,
        name=request.name,
        topic=request.topic,
        canonical_alias=alias,
        invite=request.invite,
        is_direct=request.is_direct,
        creator_member_content=profile,
    )
    room_id, _ = create_room(spec, before_alias=_alias_reserver(alias, user.user_id))
    if request.visibility == "public":
        room = room_store.get_room(room_id)
        if room is not None:
            room_store.set_room_public(room, True)
    return room_id


def _alias_reserver(alias: str | None, creator: str) -> Callable[[str], None] | None:
    """Create the alias row just before the canonical alias event names it."""
    if alias is None:
        return None

    def reserve(room_id: str) -> None:
        if not directory_store.insert_alias(alias=alias, room_id=room_id, creator=creator):
            raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")

    return reserve

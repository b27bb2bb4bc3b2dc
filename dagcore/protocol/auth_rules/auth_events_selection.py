"""Auth events selection, and the auth rules about an event's ``auth_events`` list.

Spec: https://spec.matrix.org/v1.19/server-server-api/#auth-events-selection and rule 2
(v1-v11) / rule 3 (v12) "Considering the event's auth_events" of
https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagcore.protocol.auth_rules.errors import AuthError
from dagcore.protocol.auth_rules.power import CREATE_KEY, JOIN_RULES_KEY, POWER_LEVELS_KEY
from dagcore.protocol.events import Event
from dagcore.protocol.room_versions import RoomVersion


def auth_types_for_event(
    room_version: RoomVersion,
    *,
    event_type: str,
    state_key: str | None,
    sender: str,
    content: Mapping[str, Any],
) -> list[tuple[str, str]]:
    """The ``(type, state_key)`` pairs an event's ``auth_events`` may (and should) hold.

    The create event itself has none. From v12 the create event is never listed: the
    room ID names it (MSC4291).
    """
    if event_type == "m.room.create":
        return []
    wanted: list[tuple[str, str]] = []
    if not room_version.room_id_is_create_event_hash:
        wanted.append(CREATE_KEY)
    wanted.append(POWER_LEVELS_KEY)
    wanted.append(("m.room.member", sender))
    if event_type == "m.room.member" and state_key is not None:
        if state_key != sender:
            wanted.append(("m.room.member", state_key))
        membership = content.get("membership")
        # "knock" joined this list in spec v1.14 (matrix-spec#2063): rule "knock 1" reads
        # the join rule, so a knock must cite it.
        if membership in ("join", "invite", "knock"):
            wanted.append(JOIN_RULES_KEY)
        if membership == "invite":
            tpi = content.get("third_party_invite")
            signed = tpi.get("signed") if isinstance(tpi, dict) else None
            token = signed.get("token") if isinstance(signed, dict) else None
            if isinstance(token, str):
                wanted.append(("m.room.third_party_invite", token))
        authoriser = content.get("join_authorised_via_users_server")
        if room_version.restricted_join_rule and isinstance(authoriser, str):
            key = ("m.room.member", authoriser)
            if key not in wanted:
                wanted.append(key)
    return wanted


def check_auth_events_list(
    event: Event,
    auth_events: Sequence[Event],
    *,
    create_event: Event | None = None,
) -> None:
    """The rules about the ``auth_events`` themselves; raise :class:`AuthError` on failure.

    ``auth_events`` are the events the PDU lists, in any order. In v12 the create event
    is not among them; pass it as ``create_event`` (found through the room ID) to also
    check that it is the one the room ID names and that it was not rejected.
    """
    version = event.room_version
    if event.type == "m.room.create":
        # Rule 1 decides the create event before the auth_events rules are reached.
        return
    allowed = set(
        auth_types_for_event(
            version,
            event_type=event.type,
            state_key=event.state_key,
            sender=event.sender,
            content=event.content,
        )
    )
    seen: set[tuple[str, str]] = set()
    has_create = False
    for auth_event in auth_events:
        if auth_event.state_key is None:
            raise AuthError(f"auth event {auth_event.event_id} is not a state event")
        key = (auth_event.type, auth_event.state_key)
        if key in seen:
            raise AuthError(f"duplicate auth events for {key[0]} {key[1]!r}")
        seen.add(key)
        if key == CREATE_KEY:
            if version.room_id_is_create_event_hash:
                raise AuthError("auth_events must not list the m.room.create event in this room version")
            has_create = True
        if key not in allowed:
            raise AuthError(f"auth event {key[0]} {key[1]!r} is not selected by the auth events selection")
        if auth_event.rejected_reason is not None:
            raise AuthError(f"auth event {auth_event.event_id} was rejected")
        if auth_event.room_id != event.room_id:
            raise AuthError(f"auth event {auth_event.event_id} belongs to another room")
    if version.room_id_is_create_event_hash:
        if create_event is not None:
            check_create_event_for_room(event, create_event)
    elif not has_create:
        raise AuthError("no m.room.create event among the auth events")


def check_create_event_for_room(event: Event, create_event: Event) -> None:
    """v12 rule 2: the room ID must be the ID of an accepted create event ("!" for "$")."""
    if create_event.type != "m.room.create" or create_event.state_key != "":
        raise AuthError("the room's create event is not an m.room.create state event")
    if create_event.event_id != event.create_event_id_for_v12():
        raise AuthError("room_id does not name the room's m.room.create event")
    if create_event.rejected_reason is not None:
        raise AuthError("the room's m.room.create event was rejected")

"""The authorization rules proper: is this event allowed by this state?

Spec: "Authorization rules" of each room version, newest
https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules. The rules about the
``auth_events`` list itself live in :mod:`.auth_events_selection`; everything else is
here, in the spec's order. ``state`` is the state the event is checked against: its auth
events, the state before it, or the current state (spec server-server-api "Checks
performed on receipt of a PDU", steps 4-6). It includes the create event in every
version, v12 too.
"""

from __future__ import annotations

from dagcore.protocol.auth_rules.aliases import check_aliases
from dagcore.protocol.auth_rules.auth_events_selection import check_create_event_for_room
from dagcore.protocol.auth_rules.create import check_create
from dagcore.protocol.auth_rules.errors import AuthError
from dagcore.protocol.auth_rules.ids import domain_of
from dagcore.protocol.auth_rules.member import SignatureCheck, check_member, membership_of
from dagcore.protocol.auth_rules.power import (
    CREATE_KEY,
    State,
    get_named_level,
    get_required_level,
    get_user_power_level,
)
from dagcore.protocol.auth_rules.power_levels import check_power_levels
from dagcore.protocol.auth_rules.redaction import check_redaction_v1, has_redaction_auth_rule
from dagcore.protocol.events import Event


def check_event_auth(event: Event, state: State, *, signature_check: SignatureCheck | None = None) -> None:
    """Raise :class:`AuthError` if ``event`` is not allowed by ``state``; return None if it is.

    ``signature_check(event, server_name)``, when given, verifies the extra signature a
    restricted join needs from the ``join_authorised_via_users_server`` homeserver
    (otherwise that is left to signature verification on receipt).
    """
    version = event.room_version

    if event.type == "m.room.create":
        check_create(event)
        return

    create = state.get(CREATE_KEY)
    if create is None:
        raise AuthError("no m.room.create event in the room state")
    if version.room_id_is_create_event_hash:
        check_create_event_for_room(event, create)

    if create.content.get("m.federate") is False and domain_of(event.sender) != domain_of(create.sender):
        raise AuthError("the room does not federate and the sender is from another server")

    if event.type == "m.room.aliases" and version.special_case_aliases_auth:
        check_aliases(event)
        return

    if event.type == "m.room.member":
        check_member(event, state, signature_check=signature_check)
        return

    if membership_of(event.sender, state) != "join":
        raise AuthError("the sender is not joined to the room")

    sender_level = get_user_power_level(event.sender, state)

    if event.type == "m.room.third_party_invite":
        if sender_level >= get_named_level("invite", state):
            return
        raise AuthError("the sender's power level is below the invite level")

    required = get_required_level(event.type, is_state=event.state_key is not None, state=state)
    if required > sender_level:
        raise AuthError(f"sending {event.type} needs power level {required}")

    if event.state_key is not None and event.state_key.startswith("@") and event.state_key != event.sender:
        raise AuthError("a state_key starting with '@' must be the sender's user ID")

    if event.type == "m.room.power_levels":
        check_power_levels(event, state)
        return

    if event.type == "m.room.redaction" and has_redaction_auth_rule(version):
        check_redaction_v1(event, state)
        return

"""Rule 1: ``m.room.create`` events.

Spec: rule 1 of https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules (and of
every earlier version's "Authorization rules"). Differences:

* v1-v11: the domain of ``room_id`` must be the sender's domain.
* v1-v10: ``content.creator`` is required.
* v12: the create event carries no ``room_id`` (the room ID is its hash) and
  ``additional_creators``, when present, must be a list of valid user IDs.
"""

from __future__ import annotations

from dagcore.protocol.auth_rules.errors import AuthError
from dagcore.protocol.auth_rules.ids import domain_of, is_valid_user_id
from dagcore.protocol.events import Event
from dagcore.protocol.room_versions import KNOWN_ROOM_VERSIONS


def check_create(event: Event) -> None:
    version = event.room_version
    if event.prev_event_ids:
        raise AuthError("m.room.create must not have prev_events")
    if version.room_id_is_create_event_hash:
        if "room_id" in event.pdu:
            raise AuthError("m.room.create must not have a room_id in this room version")
    else:
        if domain_of(event.room_id) != domain_of(event.sender):
            raise AuthError("the room_id's domain does not match the create event sender's domain")
    if "room_version" in event.content:
        room_version = event.content["room_version"]
        if not isinstance(room_version, str) or room_version not in KNOWN_ROOM_VERSIONS:
            raise AuthError(f"m.room.create names an unknown room version: {room_version!r}")
    if version.privileged_creators and "additional_creators" in event.content:
        extra = event.content["additional_creators"]
        if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
            raise AuthError("additional_creators must be a list of valid user IDs")
    if not version.implicit_room_creator and "creator" not in event.content:
        raise AuthError("m.room.create has no creator")

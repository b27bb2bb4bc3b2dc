"""The room versions table.

Spec: https://spec.matrix.org/v1.19/rooms/ — each room version is a bundle of
algorithm choices (event format, redaction, auth rules, state resolution). The
rest of the core asks a :class:`RoomVersion` *which rule applies* through the
named flags below instead of comparing version strings, so adding a version is
one new table row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EventFormat(enum.Enum):
    """How event IDs are formed (spec: rooms/v1 "Event IDs", v3, v4)."""

    #: v1, v2: ``$opaque:server`` chosen by the origin server, carried in the PDU.
    V1 = 1
    #: v3: ``$`` + standard unpadded base64 of the reference hash.
    V2 = 2
    #: v4+: ``$`` + URL-safe unpadded base64 of the reference hash.
    V3 = 3


class StateResAlgorithm(enum.Enum):
    V1 = "v1"
    V2 = "v2"
    #: Room version 12 (MSC4297): conflicted state subgraph, empty starting state.
    V2_1 = "v2.1"


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    event_format: EventFormat
    state_res: StateResAlgorithm
    #: v5+: signing keys must be valid at ``origin_server_ts`` (spec: rooms/v5).
    enforce_key_validity: bool
    #: v1-v5: ``m.room.aliases`` events are authorised by sender domain == state_key.
    special_case_aliases_auth: bool
    #: v6+: integers outside ±(2**53-1) and floats are invalid (spec: rooms/v6).
    strict_canonicaljson: bool
    #: v6+: ``notifications`` power levels are checked like other levels.
    limit_notifications_power_levels: bool
    #: v7+: the ``knock`` join rule and membership exist.
    knock_join_rule: bool
    #: v8+: the ``restricted`` join rule exists.
    restricted_join_rule: bool
    #: v9+: redaction keeps ``join_authorised_via_users_server`` in member events.
    restricted_join_rule_fix: bool
    #: v10+: the ``knock_restricted`` join rule exists.
    knock_restricted_join_rule: bool
    #: v10+: power level values must be integers, not strings.
    enforce_int_power_levels: bool
    #: v11+: ``m.room.create`` has no ``creator``; the sender is the creator.
    implicit_room_creator: bool
    #: v11+: updated redaction algorithm (keeps all of create content, etc.).
    updated_redaction_rules: bool
    #: v12+: room ID is the reference hash of the create event, which carries no
    #: ``room_id``; other events do not list the create event in ``auth_events``.
    room_id_is_create_event_hash: bool
    #: v12+: creators (create sender + ``additional_creators``) have infinite power.
    privileged_creators: bool
    #: False when this server cannot take part in rooms of this version.
    supported: bool = True

    @property
    def uses_server_assigned_event_ids(self) -> bool:
        return self.event_format is EventFormat.V1


def _version(identifier: str, n: int) -> RoomVersion:
    """Build a row of the table from the version number; the spec's versions are cumulative."""
    return RoomVersion(
        identifier=identifier,
        event_format=EventFormat.V1 if n <= 2 else EventFormat.V2 if n == 3 else EventFormat.V3,
        state_res=StateResAlgorithm.V1
        if n == 1
        else StateResAlgorithm.V2_1
        if n >= 12
        else StateResAlgorithm.V2,
        enforce_key_validity=n >= 5,
        special_case_aliases_auth=n <= 5,
        strict_canonicaljson=n >= 6,
        limit_notifications_power_levels=n >= 6,
        knock_join_rule=n >= 7,
        restricted_join_rule=n >= 8,
        restricted_join_rule_fix=n >= 9,
        knock_restricted_join_rule=n >= 10,
        enforce_int_power_levels=n >= 10,
        implicit_room_creator=n >= 11,
        updated_redaction_rules=n >= 11,
        room_id_is_create_event_hash=n >= 12,
        privileged_creators=n >= 12,
        # State resolution v1 is not implemented: v1 rooms are refused with
        # M_UNSUPPORTED_ROOM_VERSION (allowed by the foundation issue).
        supported=n != 1,
    )


KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {str(n): _version(str(n), n) for n in range(1, 13)}

#: What clients see as the server default (``/capabilities``) unless configured.
DEFAULT_ROOM_VERSION = "12"


class UnsupportedRoomVersion(Exception):
    """The room version is unknown or not supported by this server (M_UNSUPPORTED_ROOM_VERSION)."""

    def __init__(self, identifier: object) -> None:
        super().__init__(f"Unsupported room version: {identifier!r}")
        self.identifier = identifier


def get_room_version(identifier: object, *, require_supported: bool = True) -> RoomVersion:
    if not isinstance(identifier, str) or identifier not in KNOWN_ROOM_VERSIONS:
        raise UnsupportedRoomVersion(identifier)
    version = KNOWN_ROOM_VERSIONS[identifier]
    if require_supported and not version.supported:
        raise UnsupportedRoomVersion(identifier)
    return version

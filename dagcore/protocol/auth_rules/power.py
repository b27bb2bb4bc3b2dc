"""Power levels as the auth rules read them: user levels, named levels, creators.

Spec: https://spec.matrix.org/v1.19/client-server-api/#mroompower_levels (defaults),
https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules (room creators, infinite power),
and the per-version value formats: strings that are integers in v1-v9
(rooms/v1 "m.room.power_levels events accept values as strings"), floats truncated in
v1-v5 (rooms/v1 "... accept values as floats"), integers only from v10.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from dagcore.protocol.auth_rules.ids import is_valid_user_id
from dagcore.protocol.events import Event
from dagcore.protocol.room_versions import RoomVersion

State = Mapping[tuple[str, str], Event]

CREATE_KEY = ("m.room.create", "")
POWER_LEVELS_KEY = ("m.room.power_levels", "")
JOIN_RULES_KEY = ("m.room.join_rules", "")

#: The level of a v12 room creator: above every integer a power level event can hold.
INFINITE_POWER = math.inf

#: Power level a v1-v11 creator has while the room has no m.room.power_levels event.
CREATOR_LEVEL_WITHOUT_POWER_LEVELS = 100

#: Defaults of the named levels (client-server spec, m.room.power_levels). ``invite`` is 0
#: there; the server-server "Definitions" say 50 for all four — every implementation uses 0.
NAMED_LEVEL_DEFAULTS = {"ban": 50, "kick": 50, "redact": 50, "invite": 0}

#: The top-level properties the power-level change rules compare one by one.
LEVEL_PROPERTIES = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")

# rooms/v1 "accept values as strings": optional whitespace, one sign, base-10 digits.
_STRINGY_INT = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)


def parse_level(value: object, room_version: RoomVersion) -> int | None:
    """The integer a power level value stands for in this room version, or None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # v1-v5 do not enforce canonical JSON, so floats are truncated; later versions
        # cannot carry floats at all.
        if room_version.strict_canonicaljson or not math.isfinite(value):
            return None
        return int(value)
    if isinstance(value, str) and not room_version.enforce_int_power_levels and _STRINGY_INT.fullmatch(value):
        return int(value.strip())
    return None


def _level_or(value: object, room_version: RoomVersion, default: int) -> int:
    level = parse_level(value, room_version)
    return default if level is None else level


def power_levels_content(state: State) -> dict[str, object] | None:
    event = state.get(POWER_LEVELS_KEY)
    return event.content if event is not None else None


def _room_version(state: State) -> RoomVersion | None:
    for key in (CREATE_KEY, POWER_LEVELS_KEY):
        event = state.get(key)
        if event is not None:
            return event.room_version
    return None


def creators_of(create_event: Event) -> frozenset[str]:
    """The room creators named by a create event, per its room version.

    v1-v10: ``content.creator``; v11: the create ``sender`` (``creator`` is gone);
    v12: the ``sender`` plus ``content.additional_creators``.
    """
    version = create_event.room_version
    if not version.implicit_room_creator:
        creator = create_event.content.get("creator")
        return frozenset([creator]) if isinstance(creator, str) else frozenset()
    found = {create_event.sender}
    if version.privileged_creators:
        extra = create_event.content.get("additional_creators")
        if isinstance(extra, list):
            found.update(u for u in extra if isinstance(u, str) and is_valid_user_id(u))
    return frozenset(found)


def creators(state: State) -> frozenset[str]:
    create = state.get(CREATE_KEY)
    return creators_of(create) if create is not None else frozenset()


def is_creator(user_id: str, state: State) -> bool:
    return user_id in creators(state)


def get_user_power_level(user_id: str, state: State) -> int | float:
    """The user's power level; ``math.inf`` for a v12 room creator.

    Without an m.room.power_levels event the v1-v11 creator has 100 and everybody else 0.
    """
    version = _room_version(state)
    if version is None:
        return 0
    if version.privileged_creators and is_creator(user_id, state):
        return INFINITE_POWER
    content = power_levels_content(state)
    if content is None:
        if not version.privileged_creators and is_creator(user_id, state):
            return CREATOR_LEVEL_WITHOUT_POWER_LEVELS
        return 0
    users_default = _level_or(content.get("users_default"), version, 0)
    users = content.get("users")
    if isinstance(users, dict) and user_id in users:
        return _level_or(users[user_id], version, users_default)
    return users_default


def get_named_level(name: str, state: State) -> int:
    """``ban``, ``kick``, ``redact`` or ``invite`` level, with the spec's defaults."""
    default = NAMED_LEVEL_DEFAULTS[name]
    content = power_levels_content(state)
    version = _room_version(state)
    if content is None or version is None:
        return default
    return _level_or(content.get(name), version, default)


def get_required_level(event_type: str, *, is_state: bool, state: State) -> int:
    """The event type's *required power level*: ``events[type]``, else state/events default.

    ``state_default`` is 50 and ``events_default`` 0 whether or not the room has a
    power levels event at all (client-server spec, m.room.power_levels).
    """
    content = power_levels_content(state)
    version = _room_version(state)
    default = 50 if is_state else 0
    if content is None or version is None:
        return default
    default = _level_or(content.get("state_default" if is_state else "events_default"), version, default)
    events = content.get("events")
    if isinstance(events, dict) and event_type in events:
        return _level_or(events[event_type], version, default)
    return default

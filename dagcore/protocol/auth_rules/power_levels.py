"""The ``m.room.power_levels`` rules: value formats and who may change what.

Spec: rule 10 of https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules (rule 9 of
v6-v11, rule 10 of v1-v5). Per-version differences handled here:

* v1-v9: values may be strings holding an integer (and floats, truncated, in v1-v5);
  only ``users`` is validated. v10+: every level must be an integer.
* v6+: changes to ``notifications`` are checked like changes to ``events``.
* v12: room creators (create ``sender`` and ``additional_creators``) may not appear in
  ``users`` — their power is infinite and cannot be set.
"""

from __future__ import annotations

from collections.abc import Mapping

from dagcore.protocol.auth_rules.errors import AuthError
from dagcore.protocol.auth_rules.ids import is_valid_user_id
from dagcore.protocol.auth_rules.power import (
    LEVEL_PROPERTIES,
    POWER_LEVELS_KEY,
    State,
    creators,
    get_user_power_level,
    parse_level,
)
from dagcore.protocol.events import Event
from dagcore.protocol.room_versions import RoomVersion


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(event: Event, state: State) -> None:
    version = event.room_version
    content = event.content
    if version.enforce_int_power_levels:
        for name in LEVEL_PROPERTIES:
            if name in content and not _is_int(content[name]):
                raise AuthError(f"power level {name!r} is not an integer")
        for name in ("events", "notifications"):
            if name in content:
                value = content[name]
                if not isinstance(value, dict) or not all(_is_int(v) for v in value.values()):
                    raise AuthError(f"power levels {name!r} is not an object of integers")
    if "users" in content:
        users = content["users"]
        if not isinstance(users, dict):
            raise AuthError("power levels 'users' is not an object")
        for user_id, level in users.items():
            if not is_valid_user_id(user_id):
                raise AuthError(f"power levels 'users' has an invalid user ID: {user_id!r}")
            if parse_level(level, version) is None:
                raise AuthError(f"power level of {user_id} is not an integer")
        if version.privileged_creators:
            listed = creators(state).intersection(users)
            if listed:
                raise AuthError(f"room creators cannot be given a power level: {', '.join(sorted(listed))}")


def _levels(mapping: object, version: RoomVersion) -> dict[str, int]:
    """The valid entries of a ``{key: level}`` object; invalid values count as absent."""
    if not isinstance(mapping, dict):
        return {}
    out: dict[str, int] = {}
    for key, value in mapping.items():
        level = parse_level(value, version)
        if level is not None:
            out[key] = level
    return out


def _changed_keys(old: Mapping[str, int], new: Mapping[str, int]) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def check_power_levels(event: Event, state: State) -> None:
    """Allow (return) or reject (raise :class:`AuthError`) an m.room.power_levels event."""
    _validate(event, state)
    previous = state.get(POWER_LEVELS_KEY)
    if previous is None:
        return
    version = event.room_version
    sender = event.sender
    sender_level = get_user_power_level(sender, state)
    old_content, new_content = previous.content, event.content

    old_top = _levels({k: old_content[k] for k in LEVEL_PROPERTIES if k in old_content}, version)
    new_top = _levels({k: new_content[k] for k in LEVEL_PROPERTIES if k in new_content}, version)
    for name in _changed_keys(old_top, new_top):
        if name in old_top and old_top[name] > sender_level:
            raise AuthError(f"cannot change {name!r}: its current value is above the sender's level")
        if name in new_top and new_top[name] > sender_level:
            raise AuthError(f"cannot set {name!r} above the sender's level")

    maps = ["events", "notifications"] if version.limit_notifications_power_levels else ["events"]
    for map_name in maps:
        old_map = _levels(old_content.get(map_name), version)
        new_map = _levels(new_content.get(map_name), version)
        for key in _changed_keys(old_map, new_map):
            if key in old_map and old_map[key] > sender_level:
                raise AuthError(
                    f"cannot change {map_name}[{key!r}]: its current value is above the sender's level"
                )
            if key in new_map and new_map[key] > sender_level:
                raise AuthError(f"cannot set {map_name}[{key!r}] above the sender's level")

    old_users = _levels(old_content.get("users"), version)
    new_users = _levels(new_content.get("users"), version)
    for user_id in _changed_keys(old_users, new_users):
        if user_id != sender and user_id in old_users and old_users[user_id] >= sender_level:
            raise AuthError(f"cannot change the level of {user_id}, who is not below the sender")
        if user_id in new_users and new_users[user_id] > sender_level:
            raise AuthError(f"cannot raise {user_id} above the sender's level")

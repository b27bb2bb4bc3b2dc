"""Filters: validating filter definitions, storing them, and applying them to events.

Spec: https://spec.matrix.org/v1.19/client-server-api/#filtering and the
``Filter``/``RoomFilter``/``RoomEventFilter``/``EventFilter`` schemas of
``POST /user/{userId}/filter``. A definition is validated once, into frozen
dataclasses; ``/sync`` (and ``/messages``) apply them: the SQL-able parts
(types, senders) in the query, the rest in Python.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagcore.caching import BoundedCache
from dagcore.http.params import ascii_uint
from dagcore.protocol.canonical_json import JsonError, parse_json_body
from dagcore.store import filters as filter_store
from dagcore.store.timeline import EventFilter as SqlEventFilter

#: Timeline events per room when the filter gives no limit (as Synapse).
DEFAULT_TIMELINE_LIMIT = 10
#: The largest ``limit`` honoured for any event list.
MAX_LIMIT = 500
#: Entries per list (types, senders, rooms...) and characters per entry.
MAX_LIST_ENTRIES = 1000
MAX_ENTRY_LENGTH = 512
#: Largest filter definition accepted, as canonical JSON.
MAX_FILTER_BYTES = 65536


class FilterError(ValueError):
    """The definition does not follow the spec's filter schema (answered with 400 M_BAD_JSON)."""


# --------------------------------------------------------------------------- matching


def wildcard_match(pattern: str, value: str) -> bool:
    """Spec "Filtering": ``*`` matches any run of characters; case-sensitive.

    Segments between ``*`` are found left to right at their leftmost place:
    linear, whatever the pattern (no backtracking).
    """
    if "*" not in pattern:
        return pattern == value
    parts = pattern.split("*")
    first, last = parts[0], parts[-1]
    if not value.startswith(first) or len(value) < len(first) + len(last):
        return False
    if last and not value.endswith(last):
        return False
    pos, end = len(first), len(value) - len(last)
    for part in parts[1:-1]:
        if not part:
            continue
        i = value.find(part, pos, end)
        if i < 0:
            return False
        pos = i + len(part)
    return True


def _any_match(patterns: Sequence[str], value: str) -> bool:
    return any(wildcard_match(p, value) for p in patterns)


# --------------------------------------------------------------------------- filter objects


@dataclass(frozen=True)
class EventFilter:
    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()

    def matches(self, *, event_type: str, sender: str | None = None) -> bool:
        if self.not_types and _any_match(self.not_types, event_type):
            return False
        if self.types is not None and not _any_match(self.types, event_type):
            return False
        if sender is not None:
            if sender in self.not_senders:
                return False
            if self.senders is not None and sender not in self.senders:
                return False
        return True

    def apply_limit(self, items: list[Any], default: int | None = None) -> list[Any]:
        limit = self.limit if self.limit is not None else default
        return items if limit is None else items[:limit]


@dataclass(frozen=True)
class RoomEventFilter(EventFilter):
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def sql(self) -> SqlEventFilter:
        """The part of the filter a database query applies (types and senders)."""
        return SqlEventFilter(
            types=self.types, not_types=self.not_types, senders=self.senders, not_senders=self.not_senders
        )

    def matches_event(self, *, event_type: str, sender: str, content: Mapping[str, Any]) -> bool:
        if not self.matches(event_type=event_type, sender=sender):
            return False
        return self.contains_url is None or ("url" in content) == self.contains_url


@dataclass(frozen=True)
class RoomFilter:
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    state: RoomEventFilter = field(default_factory=RoomEventFilter)
    timeline: RoomEventFilter = field(default_factory=RoomEventFilter)
    ephemeral: RoomEventFilter = field(default_factory=RoomEventFilter)
    account_data: RoomEventFilter = field(default_factory=RoomEventFilter)

    def allows_room(self, room_id: str) -> bool:
        # "not_rooms": a matching room is excluded even if it is listed in "rooms".
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


@dataclass(frozen=True)
class SyncFilter:
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    presence: EventFilter = field(default_factory=EventFilter)
    account_data: EventFilter = field(default_factory=EventFilter)
    room: RoomFilter = field(default_factory=RoomFilter)

    @property
    def timeline_limit(self) -> int:
        limit = self.room.timeline.limit
        return min(limit, MAX_LIMIT) if limit is not None else DEFAULT_TIMELINE_LIMIT


DEFAULT_FILTER = SyncFilter()


# --------------------------------------------------------------------------- validation


def _str_list(
    obj: Mapping[str, Any], key: str, where: str, *, prefix: str | None = None
) -> tuple[str, ...] | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, list):
        raise FilterError(f"{where}{key} must be a list of strings")
    if len(value) > MAX_LIST_ENTRIES:
        raise FilterError(f"{where}{key} has more than {MAX_LIST_ENTRIES} entries")
    for item in value:
        if not isinstance(item, str) or len(item) > MAX_ENTRY_LENGTH:
            raise FilterError(f"{where}{key} must be a list of strings")
        if prefix is not None and not item.startswith(prefix):
            raise FilterError(f"{where}{key} entries must start with '{prefix}'")
    return tuple(value)


def _bool(obj: Mapping[str, Any], key: str, where: str, default: bool | None) -> bool | None:
    if key not in obj:
        return default
    value = obj[key]
    if not isinstance(value, bool):
        raise FilterError(f"{where}{key} must be a boolean")
    return value


def _object(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key, {})
    if not isinstance(value, dict):
        raise FilterError(f"{where}{key} must be an object")
    return value


def _event_filter_args(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if "limit" in obj:
        limit = obj["limit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise FilterError(f"{where}limit must be an integer greater than 0")
        args["limit"] = min(limit, MAX_LIMIT)
    args["types"] = _str_list(obj, "types", where)
    args["not_types"] = _str_list(obj, "not_types", where) or ()
    args["senders"] = _str_list(obj, "senders", where, prefix="@")
    args["not_senders"] = _str_list(obj, "not_senders", where, prefix="@") or ()
    return args


def parse_event_filter(obj: Mapping[str, Any], where: str = "") -> EventFilter:
    return EventFilter(**_event_filter_args(obj, where))


def parse_room_event_filter(obj: Mapping[str, Any], where: str = "") -> RoomEventFilter:
    """A ``RoomEventFilter`` (also the ``filter`` parameter of ``/messages`` and ``/context``)."""
    if not isinstance(obj, dict):
        raise FilterError(f"{where or 'filter'} must be an object")
    args = _event_filter_args(obj, where)
    args["rooms"] = _str_list(obj, "rooms", where, prefix="!")
    args["not_rooms"] = _str_list(obj, "not_rooms", where, prefix="!") or ()
    args["contains_url"] = _bool(obj, "contains_url", where, None)
    for key in ("lazy_load_members", "include_redundant_members", "unread_thread_notifications"):
        args[key] = _bool(obj, key, where, False)
    return RoomEventFilter(**args)


def parse_filter(definition: object) -> SyncFilter:
    """Validate a ``Filter`` definition (spec schema ``Filter``)."""
    if not isinstance(definition, dict):
        raise FilterError("a filter must be a JSON object")
    event_fields = _str_list(definition, "event_fields", "")
    event_format = definition.get("event_format", "client")
    if event_format not in ("client", "federation"):
        raise FilterError("event_format must be 'client' or 'federation'")
    room = _object(definition, "room", "")
    room_filter = RoomFilter(
        rooms=_str_list(room, "rooms", "room.", prefix="!"),
        not_rooms=_str_list(room, "not_rooms", "room.", prefix="!") or (),
        include_leave=bool(_bool(room, "include_leave", "room.", False)),
        state=parse_room_event_filter(_object(room, "state", "room."), "room.state."),
        timeline=parse_room_event_filter(_object(room, "timeline", "room."), "room.timeline."),
        ephemeral=parse_room_event_filter(_object(room, "ephemeral", "room."), "room.ephemeral."),
        account_data=parse_room_event_filter(_object(room, "account_data", "room."), "room.account_data."),
    )
    return SyncFilter(
        event_fields=event_fields,
        event_format=event_format,
        presence=parse_event_filter(_object(definition, "presence", ""), "presence."),
        account_data=parse_event_filter(_object(definition, "account_data", ""), "account_data."),
        room=room_filter,
    )


# --------------------------------------------------------------------------- storage


class FilterNotFound(LookupError):
    pass


@dataclass(frozen=True)
class FilterDefinition:
    """A filter as uploaded (``tribune.inputs.parse_filter_definition``): the definition, valid
    and at most ``MAX_FILTER_BYTES``, and what it parses to."""

    definition: dict[str, Any]
    parsed: SyncFilter


def check_filter_definition(definition: object) -> FilterDefinition:
    """Validate a definition (``FilterError`` if it breaks the schema or is too large)."""
    parsed = parse_filter(definition)
    assert isinstance(definition, dict)
    if len(json.dumps(definition, separators=(",", ":"))) > MAX_FILTER_BYTES:
        raise FilterError(f"filters are limited to {MAX_FILTER_BYTES} bytes")
    return FilterDefinition(definition=definition, parsed=parsed)


def do_create_filter(*, user_id: str, new_filter: FilterDefinition) -> str:
    """Store a filter; its ID (never starts with ``{``: spec)."""
    return str(filter_store.insert_filter(user_id=user_id, definition=new_filter.definition))


def get_filter_definition(*, user_id: str, filter_id: str) -> dict[str, Any]:
    """A user's stored filter, or ``FilterNotFound`` (also for malformed IDs and others' filters)."""
    number = ascii_uint(filter_id)
    if number is None:
        raise FilterNotFound(filter_id)
    found = filter_store.get_filter(user_id=user_id, filter_id=number)
    if found is None:
        raise FilterNotFound(filter_id)
    return found


#: Parsed ``/sync`` filters. Inline definitions are keyed by their text; stored ones by
#: (user, filter ID): a stored filter is never changed (the spec has no way to), so both
#: keys name their definition for good. Most clients send the same filter on every
#: ``/sync``, so this saves a parse (or a query) per request.
_sync_filters: BoundedCache[tuple[str, str], SyncFilter] = BoundedCache(
    "filters.sync_filters", maxsize=10_000
)


def resolve_sync_filter(*, user_id: str, value: str | None) -> SyncFilter:
    """``/sync``'s ``filter`` parameter: a filter ID, or a definition inline when it starts with ``{``.

    Raises ``FilterError`` (bad definition) or ``FilterNotFound``.
    """
    if not value:
        return DEFAULT_FILTER
    inline = value.startswith("{")
    key = ("", value) if inline else (user_id, value)
    cached = _sync_filters.get(key)
    if cached is not None:
        return cached
    if inline:
        if len(value) > MAX_FILTER_BYTES:
            raise FilterError(f"filters are limited to {MAX_FILTER_BYTES} bytes")
        try:
            definition = parse_json_body(value.encode())
        except JsonError as exc:
            raise FilterError(f"the filter is not valid JSON: {exc}") from None
    else:
        definition = get_filter_definition(user_id=user_id, filter_id=value)
    parsed = parse_filter(definition)
    _sync_filters.put(key, parsed)
    return parsed

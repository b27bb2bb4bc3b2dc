"""Request bodies and query parameters of the client API, parsed into typed values.

Parsing belongs to the interface (STYLE.md #1: a view parses, calls one action, shapes the
answer): a view hands what the client sent to a ``parse_*`` function here, which raises
the 4xx ``MatrixError`` of a malformed request and returns a frozen dataclass; the action
takes that dataclass, never a raw body. What is left to the action is what needs the
database (does the invitee exist, is the alias taken).

Dataclasses an action takes are defined beside the action in ``dagcore.actions`` (dagcore
imports no interface, and another interface may build them too); those only a view
reads (the ``/sync`` query, the ``filter`` parameter of ``/messages``) are defined here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from dagcore.actions import create_room as create_room_actions
from dagcore.actions import filters as filter_actions
from dagcore.actions import pushers as pusher_actions
from dagcore.actions import search as search_actions
from dagcore.actions.create_room import CreateRoomRequest
from dagcore.actions.filters import FilterDefinition, FilterError, parse_room_event_filter
from dagcore.actions.key_backup import BackupParams
from dagcore.actions.push_rules import NewPushRule, check_kind
from dagcore.actions.pushers import PusherSettings, SetPusherRequest
from dagcore.actions.search import SearchCriteria
from dagcore.actions.send_event import check_content_size
from dagcore.http.errors import MatrixError
from dagcore.http.params import ascii_uint
from dagcore.net.outbound import check_http_url
from dagcore.protocol import push_rules as rules
from dagcore.protocol.canonical_json import (
    JsonError,
    check_event_values,
    encode_canonical_json,
    parse_json_body,
)
from dagcore.protocol.identifiers import is_valid_room_alias, is_valid_user_id
from dagcore.protocol.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from dagcore.server_keys import get_server_name
from dagcore.store.key_backup import BackedUpKey
from dagcore.store.timeline import EventFilter
from dagcore.sync.tokens import SyncToken


def _invalid(msg: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", msg)


# --------------------------------------------------------------------------- GET /sync

#: Longest long-poll honoured (ms); clients ask for 30 s.
MAX_SYNC_TIMEOUT_MS = 300_000
PRESENCE_VALUES = ("online", "offline", "unavailable")


@dataclass(frozen=True)
class SyncQuery:
    """The query parameters of ``GET /sync`` (the filter is resolved later: it may be an ID)."""

    since: SyncToken | None
    timeout_ms: int
    full_state: bool
    set_presence: str | None
    filter: str | None


def parse_sync_query(request: HttpRequest) -> SyncQuery:
    q = request.GET
    since = q.get("since")
    token = SyncToken.parse(since) if since else None
    raw_timeout = q.get("timeout", "0") or "0"
    try:
        timeout = int(raw_timeout)
    except ValueError:
        raise _invalid("timeout must be an integer (milliseconds)") from None
    if timeout < 0:
        raise _invalid("timeout must not be negative")
    full_state = q.get("full_state", "false")
    if full_state not in ("true", "false"):
        raise _invalid("full_state must be true or false")
    set_presence = q.get("set_presence")
    if set_presence is not None and set_presence not in PRESENCE_VALUES:
        raise _invalid("set_presence must be online, offline or unavailable")
    return SyncQuery(
        since=token,
        timeout_ms=min(timeout, MAX_SYNC_TIMEOUT_MS),
        full_state=full_state == "true",
        set_presence=set_presence,
        filter=q.get("filter"),
    )


# --------------------------------------------------------------------------- ?filter= of /messages, /context

#: Entries per ``types``/``senders`` list of a ``filter`` parameter.
MAX_FILTER_LIST = 1000


@dataclass(frozen=True)
class MessagesFilter:
    """The ``filter`` parameter (a ``RoomEventFilter``) of ``/messages`` and ``/context``."""

    #: The types and senders a database query applies; None when the filter has none.
    sql: EventFilter | None = None
    contains_url: bool | None = None
    lazy_load_members: bool = False
    limit: int | None = None


def _filter_list(value: Any, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_FILTER_LIST
        or not all(isinstance(v, str) and "\x00" not in v for v in value)
    ):
        raise _invalid(f"filter.{name} must be a list of strings")
    return tuple(value)


def parse_messages_filter(raw: str | None) -> MessagesFilter:
    """A ``RoomEventFilter`` given as JSON in a query parameter (spec: "Filtering")."""
    if not raw:
        return MessagesFilter()
    try:
        # The strict parser of request bodies: bounded depth, no NaN, no lone surrogates.
        data = parse_json_body(raw.encode("utf-8", "surrogatepass"))
    except JsonError:
        raise _invalid("filter must be a JSON RoomEventFilter") from None
    if not isinstance(data, dict):
        raise _invalid("filter must be a JSON object")
    types = _filter_list(data.get("types"), "types")
    not_types = _filter_list(data.get("not_types"), "not_types") or ()
    senders = _filter_list(data.get("senders"), "senders")
    not_senders = _filter_list(data.get("not_senders"), "not_senders") or ()
    sql = None
    if types is not None or not_types or senders is not None or not_senders:
        sql = EventFilter(types=types, not_types=not_types, senders=senders, not_senders=not_senders)
    contains_url = data.get("contains_url")
    if contains_url is not None and not isinstance(contains_url, bool):
        raise _invalid("filter.contains_url must be a boolean")
    lazy = data.get("lazy_load_members", False)
    if not isinstance(lazy, bool):
        raise _invalid("filter.lazy_load_members must be a boolean")
    limit = data.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise _invalid("filter.limit must be a non-negative integer")
    return MessagesFilter(sql=sql, contains_url=contains_url, lazy_load_members=lazy, limit=limit)


# --------------------------------------------------------------------------- POST /user/{userId}/filter


def parse_filter_definition(body: Mapping[str, Any]) -> FilterDefinition:
    """A ``Filter`` to store (spec schema ``Filter``): 400 M_BAD_JSON if it breaks the schema."""
    try:
        return filter_actions.check_filter_definition(dict(body))
    except FilterError as exc:
        raise MatrixError(400, "M_BAD_JSON", f"Invalid filter: {exc}") from None


# --------------------------------------------------------------------------- POST /createRoom


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"{key} must be a string")
    return value


def _optional_object(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise _invalid(f"{key} must be an object")
    return value


def _check_content_values(content: Any, room_version: RoomVersion, what: str) -> None:
    try:
        check_event_values(content, strict=room_version.strict_canonicaljson)
    except JsonError as exc:
        raise MatrixError(400, exc.errcode, f"{what}: {exc}") from None


def _invitees(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(u, str) and is_valid_user_id(u) for u in value):
        raise _invalid("invite must be a list of user IDs")
    if len(value) > create_room_actions.MAX_INVITES:
        raise _invalid(f"At most {create_room_actions.MAX_INVITES} users can be invited when creating a room")
    return tuple(dict.fromkeys(value))


def _initial_state(value: Any, room_version: RoomVersion) -> tuple[tuple[str, str, dict[str, Any]], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid("initial_state must be a list")
    if len(value) > create_room_actions.MAX_INITIAL_STATE:
        raise _invalid(f"initial_state may hold at most {create_room_actions.MAX_INITIAL_STATE} events")
    out: list[tuple[str, str, dict[str, Any]]] = []
    for item in value:
        if not isinstance(item, dict):
            raise _invalid("initial_state entries must be objects")
        etype, skey, content = item.get("type"), item.get("state_key", ""), item.get("content")
        if not isinstance(etype, str) or not etype or len(etype.encode()) > 255:
            raise _invalid("initial_state entries need a type")
        if not isinstance(skey, str) or len(skey.encode()) > 255:
            raise _invalid("initial_state state_key must be a string")
        if not isinstance(content, dict):
            raise _invalid("initial_state entries need a content object")
        if etype == "m.room.create":
            raise _invalid("initial_state cannot hold m.room.create (use creation_content)")
        _check_content_values(content, room_version, "initial_state")
        check_content_size(event_type=etype, state_key=skey, content=content)
        out.append((etype, skey, content))
    return tuple(out)


def parse_create_room(body: Mapping[str, Any]) -> CreateRoomRequest:
    """A ``POST /createRoom`` body (spec: "Creation").

    https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3createroom
    """
    visibility = body.get("visibility", "private")
    if visibility not in ("public", "private"):
        raise _invalid("visibility must be 'public' or 'private'")
    preset = body.get("preset")
    if preset is None:
        preset = "public_chat" if visibility == "public" else "private_chat"
    if preset not in create_room_actions.PRESETS:
        raise _invalid(f"preset must be one of {', '.join(create_room_actions.PRESETS)}")
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
        raise _invalid("is_direct must be a boolean")
    if body.get("invite_3pid"):
        raise MatrixError(400, "M_UNRECOGNIZED", "Third-party invites are not supported")
    invite = _invitees(body.get("invite"))
    initial_state = _initial_state(body.get("initial_state"), room_version)
    creation_content = dict(_optional_object(body, "creation_content") or {})
    _check_content_values(creation_content, room_version, "creation_content")
    check_content_size(event_type="m.room.create", state_key="", content=creation_content)
    # The server sets these (the version from ``room_version``, the creator from the sender).
    creation_content.pop("room_version", None)
    creation_content.pop("creator", None)
    if room_version.privileged_creators:
        extra = creation_content.get("additional_creators", [])
        if not isinstance(extra, list) or not all(isinstance(u, str) and is_valid_user_id(u) for u in extra):
            raise _invalid("creation_content.additional_creators must be a list of user IDs")
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
            raise _invalid("room_alias_name is not a valid alias localpart")
    return CreateRoomRequest(
        visibility=visibility,
        preset=preset,
        room_version=room_version,
        name=name,
        topic=topic,
        is_direct=is_direct,
        invite=invite,
        initial_state=initial_state,
        creation_content=creation_content,
        power_level_content_override=pl_override,
        room_alias=alias,
    )


# --------------------------------------------------------------------------- POST /search


def _int_in(obj: Mapping[str, Any], key: str, default: int, maximum: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _invalid(f"{key} must be a non-negative integer")
    return min(value, maximum)


def parse_search_criteria(body: Mapping[str, Any]) -> SearchCriteria:
    """The ``room_events`` criteria of a ``POST /search`` body (spec: "Server Side Search")."""
    categories = body.get("search_categories")
    if not isinstance(categories, dict):
        raise MatrixError(400, "M_BAD_JSON", "search_categories must be an object")
    criteria = categories.get("room_events")
    if not isinstance(criteria, dict):
        # room_events is the only category the spec defines.
        raise MatrixError(400, "M_BAD_JSON", "search_categories.room_events must be an object")
    term = criteria.get("search_term")
    if not isinstance(term, str) or not term.strip():
        raise MatrixError(400, "M_BAD_JSON", "search_term must be a non-empty string")
    if len(term) > search_actions.MAX_TERM_CHARS:
        raise _invalid(f"search_term is longer than {search_actions.MAX_TERM_CHARS} characters")
    words = tuple(dict.fromkeys(search_actions.words_of(term)))[: search_actions.MAX_WORDS]
    key_types = search_actions.KEY_TYPES
    keys = criteria.get("keys", list(key_types))
    if not isinstance(keys, list) or not keys or any(k not in key_types for k in keys):
        raise _invalid(f"keys must be a list of {', '.join(key_types)}")
    raw_filter = criteria.get("filter", {})
    if not isinstance(raw_filter, dict):
        raise _invalid("filter must be an object")
    try:
        event_filter = parse_room_event_filter(raw_filter, "filter.")
    except FilterError as exc:
        raise _invalid(str(exc)) from None
    limit = event_filter.limit if event_filter.limit is not None else search_actions.DEFAULT_LIMIT
    order_by = criteria.get("order_by", "rank")
    if order_by not in ("rank", "recent"):
        raise _invalid("order_by must be 'rank' or 'recent'")
    context = criteria.get("event_context")
    before_limit = after_limit = None
    include_profile = False
    if context is not None:
        if not isinstance(context, dict):
            raise _invalid("event_context must be an object")
        before_limit = _int_in(context, "before_limit", 5, search_actions.MAX_CONTEXT)
        after_limit = _int_in(context, "after_limit", 5, search_actions.MAX_CONTEXT)
        include_profile = context.get("include_profile", False)
        if not isinstance(include_profile, bool):
            raise _invalid("include_profile must be a boolean")
    include_state = criteria.get("include_state", False)
    if not isinstance(include_state, bool):
        raise _invalid("include_state must be a boolean")
    group_by: list[str] = []
    groupings = criteria.get("groupings")
    if groupings is not None:
        groups = groupings.get("group_by") if isinstance(groupings, dict) else None
        if not isinstance(groups, list) or any(
            not isinstance(g, dict) or g.get("key") not in ("room_id", "sender") for g in groups
        ):
            raise _invalid("groupings.group_by must list {key: room_id|sender}")
        group_by = [g["key"] for g in groups]
    return SearchCriteria(
        words=words,
        keys=tuple(dict.fromkeys(keys)),
        event_filter=event_filter,
        limit=min(limit, search_actions.MAX_LIMIT),
        order_by=order_by,
        before_limit=before_limit,
        after_limit=after_limit,
        include_profile=include_profile,
        include_state=include_state,
        group_by=tuple(dict.fromkeys(group_by)),
    )


def parse_search_batch(next_batch: str | None) -> int | None:
    """``next_batch`` of ``/search``: the stream position the previous scan stopped at."""
    if next_batch is None:
        return None
    position = ascii_uint(next_batch)
    if position is None:
        raise _invalid("Invalid next_batch token")
    return position


# --------------------------------------------------------------------------- POST /pushers/set


def _string(
    body: Mapping[str, Any],
    name: str,
    *,
    max_chars: int = pusher_actions.MAX_TEXT_CHARS,
    required: bool = True,
) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise MatrixError(400, "M_MISSING_PARAM", f"Missing {name}")
        return None
    if not isinstance(value, str):
        raise _invalid(f"{name} must be a string")
    if len(value) > max_chars:
        raise _invalid(f"{name} is longer than {max_chars} characters")
    return value


def _required_string(
    body: Mapping[str, Any], name: str, *, max_chars: int = pusher_actions.MAX_TEXT_CHARS
) -> str:
    value = _string(body, name, max_chars=max_chars)
    assert value is not None
    return value


def _pusher_data(kind: str, data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MatrixError(
            400, "M_MISSING_PARAM" if data is None else "M_INVALID_PARAM", "data must be an object"
        )
    if len(encode_canonical_json(data)) > pusher_actions.MAX_DATA_BYTES:
        raise _invalid(f"data is larger than {pusher_actions.MAX_DATA_BYTES} bytes")
    if kind == "http":
        url = data.get("url")
        if not isinstance(url, str):
            raise _invalid("data.url is required for http pushers")
        try:
            parsed = check_http_url(url)
        except ValueError as exc:
            raise _invalid(f"data.url: {exc}") from None
        if parsed.path != pusher_actions.NOTIFY_PATH:
            raise _invalid(f"data.url must have the path {pusher_actions.NOTIFY_PATH}")
        fmt = data.get("format")
        if fmt is not None and fmt != "event_id_only":
            raise _invalid("data.format may only be 'event_id_only'")
    return data


def parse_set_pusher(body: Mapping[str, Any]) -> SetPusherRequest:
    """A ``POST /pushers/set`` body (spec: "Push Notifications"); ``kind: null`` deletes."""
    pushkey = _required_string(body, "pushkey", max_chars=pusher_actions.MAX_PUSHKEY_BYTES)
    app_id = _required_string(body, "app_id", max_chars=pusher_actions.MAX_APP_ID_CHARS)
    if len(pushkey.encode("utf-8", "surrogatepass")) > pusher_actions.MAX_PUSHKEY_BYTES:
        raise _invalid(f"pushkey is longer than {pusher_actions.MAX_PUSHKEY_BYTES} bytes")
    if "kind" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing kind")
    kind = body["kind"]
    if kind is None:
        return SetPusherRequest(app_id=app_id, pushkey=pushkey, settings=None)
    if kind == "email":
        raise _invalid("This server sends no e-mail: only http pushers are supported")
    if kind != "http":
        raise _invalid("kind must be 'http' or null")
    append = body.get("append", False)
    if not isinstance(append, bool):
        raise _invalid("append must be a boolean")
    data = _pusher_data(kind, body.get("data"))
    pusher = PusherSettings(
        kind=kind,
        append=append,
        data=data,
        app_display_name=_required_string(body, "app_display_name"),
        device_display_name=_required_string(body, "device_display_name"),
        profile_tag=_string(body, "profile_tag", required=False),
        lang=_required_string(body, "lang", max_chars=64),
    )
    return SetPusherRequest(app_id=app_id, pushkey=pushkey, settings=pusher)


# --------------------------------------------------------------------------- /pushrules


def parse_push_rule(
    *, kind: str, rule_id: str, body: Mapping[str, Any], before: str | None, after: str | None
) -> NewPushRule:
    """``PUT /pushrules/global/{kind}/{ruleId}`` (spec: "setPushRule"): the rule, placed by
    the ``before``/``after`` query parameters."""
    check_kind(kind)
    if rule_id.startswith("."):
        raise _invalid("Rule IDs starting with '.' are reserved for server-default rules")
    try:
        fields = rules.validate_rule_body(kind, rule_id, body)
    except rules.PushRuleError as exc:
        raise _invalid(str(exc)) from None
    for anchor in (before, after):
        if anchor is not None and anchor.startswith("."):
            raise _invalid("Rules cannot be placed relative to server-default rules")
    return NewPushRule(
        kind=kind,
        rule_id=rule_id,
        conditions=fields.get("conditions", []),
        actions=fields["actions"],
        pattern=fields.get("pattern"),
        before=before,
        after=after,
    )


def parse_rule_enabled(body: Mapping[str, Any]) -> bool:
    """``PUT /pushrules/global/{kind}/{ruleId}/enabled``: ``{"enabled": bool}``."""
    if "enabled" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing enabled")
    enabled = body["enabled"]
    if not isinstance(enabled, bool):
        raise MatrixError(400, "M_BAD_JSON", "enabled must be a boolean")
    return enabled


def parse_rule_actions(body: Mapping[str, Any]) -> list[Any]:
    """``PUT /pushrules/global/{kind}/{ruleId}/actions``: ``{"actions": [...]}`` (spec "Actions")."""
    if "actions" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing actions")
    try:
        return rules.validate_actions(body["actions"])
    except rules.PushRuleError as exc:
        raise _invalid(str(exc)) from None


# --------------------------------------------------------------------------- /room_keys

MAX_ALGORITHM_LENGTH = 255
#: Most session keys one request may store (clients send a few hundred per request).
MAX_KEYS_PER_REQUEST = 10_000


def parse_backup_params(body: Mapping[str, Any]) -> BackupParams:
    """``algorithm`` and ``auth_data`` of ``POST /room_keys/version``."""
    algorithm = body.get("algorithm")
    if algorithm is None:
        raise MatrixError(400, "M_MISSING_PARAM", "algorithm is required")
    if not isinstance(algorithm, str) or not algorithm or len(algorithm) > MAX_ALGORITHM_LENGTH:
        raise _invalid("algorithm must be a non-empty string")
    auth_data = body.get("auth_data")
    if auth_data is None:
        raise MatrixError(400, "M_MISSING_PARAM", "auth_data is required")
    if not isinstance(auth_data, dict):
        raise _invalid("auth_data must be an object")
    if algorithm == "m.megolm_backup.v1.curve25519-aes-sha2" and not isinstance(
        auth_data.get("public_key"), str
    ):
        # Spec "m.megolm_backup.v1.curve25519-aes-sha2": auth_data.public_key is required.
        raise _invalid("auth_data.public_key is required for this algorithm")
    return BackupParams(algorithm=algorithm, auth_data=auth_data)


def parse_backup_update(body: Mapping[str, Any], *, version: str) -> BackupParams:
    """``PUT /room_keys/version/{version}``: as for a new backup; a ``version`` in the body
    must be the one in the path."""
    params = parse_backup_params(body)
    if "version" in body and body["version"] != version:
        raise _invalid("version does not match the version in the path")
    return params


def _key_data(value: object, *, where: str) -> tuple[int, int, bool, dict[str, Any]]:
    if not isinstance(value, dict):
        raise MatrixError(400, "M_BAD_JSON", f"{where} must be an object")
    fmi, fc, verified, data = (
        value.get("first_message_index"),
        value.get("forwarded_count"),
        value.get("is_verified"),
        value.get("session_data"),
    )
    for name, field in (("first_message_index", fmi), ("forwarded_count", fc)):
        if field is None:
            raise MatrixError(400, "M_MISSING_PARAM", f"{where}.{name} is required")
        if not isinstance(field, int) or isinstance(field, bool) or not 0 <= field < 2**53:
            raise _invalid(f"{where}.{name} must be a non-negative integer")
    if not isinstance(verified, bool):
        raise MatrixError(400, "M_INVALID_PARAM" if verified is not None else "M_MISSING_PARAM",
                          f"{where}.is_verified must be a boolean")  # fmt: skip
    if not isinstance(data, dict):
        raise MatrixError(400, "M_INVALID_PARAM" if data is not None else "M_MISSING_PARAM",
                          f"{where}.session_data must be an object")  # fmt: skip
    assert isinstance(fmi, int) and isinstance(fc, int)
    return fmi, fc, verified, data


def _session_id(session_id: str) -> str:
    if not session_id or len(session_id) > 255:
        raise _invalid("Invalid session ID")
    return session_id


def _room_id(room_id: str) -> str:
    if not room_id.startswith("!") or len(room_id) > 255:
        raise _invalid("Invalid room ID")
    return room_id


def _sessions(room_id: str, value: object, *, where: str) -> list[BackedUpKey]:
    if not isinstance(value, dict):
        raise MatrixError(400, "M_BAD_JSON", f"{where} must be an object")
    sessions = value.get("sessions")
    if not isinstance(sessions, dict):
        raise MatrixError(400, "M_BAD_JSON", f"{where}.sessions must be an object")
    out = []
    for session_id, data in sessions.items():
        _session_id(session_id)
        fmi, fc, verified, session_data = _key_data(data, where=f"{where}.sessions.{session_id}")
        out.append(BackedUpKey(room_id, session_id, fmi, fc, verified, session_data))
    return out


def parse_room_keys_upload(
    body: Mapping[str, Any], *, room_id: str | None = None, session_id: str | None = None
) -> tuple[BackedUpKey, ...]:
    """The keys of a ``PUT /room_keys/keys[/{roomId}[/{sessionId}]]`` body (spec "Storing keys")."""
    if room_id is not None and session_id is not None:
        _room_id(room_id)
        _session_id(session_id)
        fmi, fc, verified, data = _key_data(body, where="body")
        keys = [BackedUpKey(room_id, session_id, fmi, fc, verified, data)]
    elif room_id is not None:
        keys = _sessions(_room_id(room_id), body, where="body")
    else:
        rooms = body.get("rooms")
        if not isinstance(rooms, dict):
            raise MatrixError(
                400, "M_BAD_JSON" if rooms is not None else "M_MISSING_PARAM", "rooms must be an object"
            )
        keys = []
        for rid, value in rooms.items():
            keys += _sessions(_room_id(rid), value, where=f"rooms.{rid}")
    if len(keys) > MAX_KEYS_PER_REQUEST:
        raise _invalid(f"At most {MAX_KEYS_PER_REQUEST} keys per request")
    return tuple(keys)

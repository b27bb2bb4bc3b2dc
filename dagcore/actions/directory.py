"""Room aliases and the public room directory.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-aliases and
https://spec.matrix.org/v1.19/client-server-api/#listing-rooms. Publication in
the directory is governed by the operator's ``room_list_publication_rules``
(first matching rule wins, no match refuses — as in Synapse).
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from dagcore.actions.persist_event import send_local_event
from dagcore.actions.room_access import access_room_history
from dagcore.federation.queries import query_remote_public_rooms
from dagcore.http.errors import MatrixError
from dagcore.http.params import ascii_uint
from dagcore.models import Room, User
from dagcore.protocol.auth_rules import get_required_level, get_user_power_level
from dagcore.protocol.identifiers import is_valid_room_alias, is_valid_server_name
from dagcore.server_keys import get_server_name
from dagcore.store import directory as directory_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store.directory import PublishedRoom

MAX_PUBLIC_ROOMS_LIMIT = 500
DEFAULT_PUBLIC_ROOMS_LIMIT = 100
CANONICAL_ALIAS_KEY = ("m.room.canonical_alias", "")


def _domain(identifier: str) -> str:
    return identifier.split(":", 1)[1] if ":" in identifier else ""


def check_local_alias(alias: str) -> str:
    if not is_valid_room_alias(alias):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room alias")
    if _domain(alias) != get_server_name():
        raise MatrixError(400, "M_INVALID_PARAM", "Room aliases must be on this server")
    return alias


def _can_send_state(user_id: str, room: Room, event_type: str) -> bool:
    state = state_store.get_current_state_events(
        room, [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", user_id)]
    )
    member = state.get(("m.room.member", user_id))
    if member is None or member.membership != "join":
        return False
    return get_user_power_level(user_id, state) >= get_required_level(event_type, is_state=True, state=state)


# --------------------------------------------------------------------------- aliases


def resolve_local_alias(alias: str) -> str:
    """The room ID an alias names: 400 for a malformed alias, 404 for an unknown one or one
    of another server (remote aliases need federation)."""
    if not is_valid_room_alias(alias):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room alias")
    if _domain(alias) != get_server_name():
        raise MatrixError(
            404, "M_NOT_FOUND", "Room alias not found (aliases of other servers need federation)"
        )
    row = directory_store.get_alias(alias)
    if row is None:
        raise MatrixError(404, "M_NOT_FOUND", "Room alias not found")
    return row.room_id


def get_alias_target(*, alias: str) -> tuple[str, list[str]]:
    """``(room_id, servers)`` of an alias (local ones; remote aliases need federation)."""
    room_id = resolve_local_alias(alias)
    room = room_store.get_room(room_id)
    servers = room_store.get_joined_servers(room) if room is not None else []
    server_name = get_server_name()
    # Our own server first: it answers for the alias.
    servers = sorted(set(servers) | {server_name}, key=lambda s: (s != server_name, s))
    return room_id, servers


def check_create_alias(*, user: User, alias: str, room_id: Any) -> None:
    """Create a local alias; the creator must be in the room. An existing alias is 409 M_UNKNOWN."""
    check_local_alias(alias)
    if not isinstance(room_id, str):
        raise MatrixError(400, "M_INVALID_PARAM", "room_id must be a string")
    room = room_store.get_room(room_id)
    if room is None:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
    membership = room_store.get_membership(room, user.user_id)
    if not user.is_admin and (membership is None or membership.membership != "join"):
        raise MatrixError(403, "M_FORBIDDEN", "You must be in the room to give it an alias")
    if not directory_store.insert_alias(alias=alias, room_id=room_id, creator=user.user_id):
        raise MatrixError(409, "M_UNKNOWN", "Room alias already exists")


def check_delete_alias(*, user: User, alias: str) -> None:
    """Delete a local alias: its creator, an admin of the room (canonical alias level) or a server admin.

    If it was the room's canonical alias (or an alt alias), the canonical alias event is updated.
    """
    check_local_alias(alias)
    row = directory_store.get_alias(alias)
    if row is None:
        raise MatrixError(404, "M_NOT_FOUND", "Room alias not found")
    room = room_store.get_room(row.room_id)
    allowed = user.is_admin or row.creator == user.user_id
    if not allowed and room is not None:
        allowed = _can_send_state(user.user_id, room, "m.room.canonical_alias")
    if not allowed:
        raise MatrixError(403, "M_FORBIDDEN", "You may not delete this alias")
    directory_store.delete_alias(alias)
    if room is not None:
        _drop_from_canonical_alias(room, alias, user.user_id)


def _drop_from_canonical_alias(room: Room, alias: str, user_id: str) -> None:
    event = state_store.get_current_state_events(room, [CANONICAL_ALIAS_KEY]).get(CANONICAL_ALIAS_KEY)
    if event is None:
        return
    content = dict(event.content)
    changed = False
    if content.get("alias") == alias:
        content.pop("alias")
        changed = True
    alt = content.get("alt_aliases")
    if isinstance(alt, list) and alias in alt:
        content["alt_aliases"] = [a for a in alt if a != alias]
        changed = True
    if not changed:
        return
    sender = user_id if _can_send_state(user_id, room, "m.room.canonical_alias") else None
    if sender is None:
        return  # the alias is gone from the directory; the stale event is harmless (clients re-resolve)
    with contextlib.suppress(MatrixError):
        send_local_event(
            room_id=room.room_id,
            sender=sender,
            event_type="m.room.canonical_alias",
            content=content,
            state_key="",
        )


def access_room_aliases(*, user_id: str, room_id: str) -> list[str]:
    """Local aliases of a room, for members (or anyone if it is world-readable)."""

    reader = access_room_history(user_id=user_id, room_id=room_id, allow_departed=False)
    return directory_store.get_aliases_for_room(reader.room.room_id)


# --------------------------------------------------------------------------- publication


def is_publication_allowed(*, user_id: str, room_id: str, aliases: Sequence[str]) -> bool:
    """``room_list_publication_rules``: the first rule matching user, room and an alias decides."""
    rules: list[dict[str, Any]] = settings.DAGMA.room_list_publication_rules or []
    for rule in rules:
        if not fnmatch.fnmatchcase(user_id, str(rule.get("user_id", "*"))):
            continue
        if not fnmatch.fnmatchcase(room_id, str(rule.get("room_id", "*"))):
            continue
        alias_glob = str(rule.get("alias", "*"))
        if alias_glob != "*" and not any(fnmatch.fnmatchcase(a, alias_glob) for a in aliases):
            continue
        return rule.get("action") == "allow"
    return False


def get_room_visibility(*, room_id: str) -> str:
    room = room_store.get_room(room_id)
    if room is None:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
    return "public" if room.is_public else "private"


def check_set_room_visibility(*, user: User, room_id: str, visibility: Any) -> None:
    """Publish or unpublish a room: room admins (canonical alias level) or server admins."""
    if visibility not in ("public", "private"):
        raise MatrixError(400, "M_INVALID_PARAM", "visibility must be 'public' or 'private'")
    room = room_store.get_room(room_id)
    if room is None:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
    if not user.is_admin and not _can_send_state(user.user_id, room, "m.room.canonical_alias"):
        raise MatrixError(403, "M_FORBIDDEN", "You need power in the room to change its directory visibility")
    if visibility == "public" and not user.is_admin:
        aliases = directory_store.get_aliases_for_room(room_id)
        if not is_publication_allowed(user_id=user.user_id, room_id=room_id, aliases=aliases):
            raise MatrixError(403, "M_FORBIDDEN", "Publishing rooms to the directory is not allowed")
    room_store.set_room_public(room, visibility == "public")


def do_publish_room(*, room: Room, public: bool) -> None:
    room_store.set_room_public(room, public)


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class PublicRoomsPage:
    chunk: list[dict[str, Any]]
    next_batch: str | None
    prev_batch: str | None
    total: int


def parse_public_rooms_token(value: str | None) -> int:
    """``since`` tokens are ``o<offset>``: stable enough for a list ordered by size then room ID."""
    if value is None or value == "":
        return 0
    offset = ascii_uint(value[1:], max_digits=11) if value.startswith("o") else None
    if offset is None:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid pagination token")
    return offset


def room_summary_chunk(
    room_id: str, joined_members: int, state: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """A room's ``PublicRoomsChunk`` (also the base of a space hierarchy entry) from its summary state."""
    chunk: dict[str, Any] = {
        "room_id": room_id,
        "num_joined_members": joined_members,
        "world_readable": state.get("m.room.history_visibility", {}).get("history_visibility")
        == "world_readable",
        "guest_can_join": state.get("m.room.guest_access", {}).get("guest_access") == "can_join",
    }
    for key, etype, field in (
        ("name", "m.room.name", "name"),
        ("topic", "m.room.topic", "topic"),
        ("avatar_url", "m.room.avatar", "url"),
        ("canonical_alias", "m.room.canonical_alias", "alias"),
        ("join_rule", "m.room.join_rules", "join_rule"),
        ("room_type", "m.room.create", "type"),
    ):
        value = state.get(etype, {}).get(field)
        if isinstance(value, str) and value:
            chunk[key] = value
    return chunk


def _summary_chunk(room: PublishedRoom, state: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return room_summary_chunk(room.room_id, room.joined_members, state)


def _matches(chunk: dict[str, Any], term: str) -> bool:
    term = term.casefold()
    return any(
        term in str(chunk.get(k, "")).casefold() for k in ("name", "topic", "canonical_alias", "room_id")
    )


def get_public_rooms(
    *,
    limit: int | None,
    since: str | None,
    search_term: str | None = None,
    room_types: Sequence[str | None] | None = None,
) -> PublicRoomsPage:
    """One page of the local public room directory (largest rooms first)."""
    offset = parse_public_rooms_token(since)
    size = DEFAULT_PUBLIC_ROOMS_LIMIT if limit is None else max(0, min(limit, MAX_PUBLIC_ROOMS_LIMIT))
    rooms = directory_store.get_published_rooms()
    filtering = bool(search_term) or room_types is not None
    if filtering:
        # Filters read the rooms' state, so load the summaries of all published rooms (one query).
        summaries = directory_store.get_room_summaries(r.room_nid for r in rooms)
        chunks = [_summary_chunk(r, summaries[r.room_nid]) for r in rooms]
        if search_term:
            chunks = [c for c in chunks if _matches(c, search_term)]
        if room_types is not None:
            chunks = [c for c in chunks if c.get("room_type") in room_types]
        total = len(chunks)
        page = chunks[offset : offset + size]
    else:
        total = len(rooms)
        selected = rooms[offset : offset + size]
        summaries = directory_store.get_room_summaries(r.room_nid for r in selected)
        page = [_summary_chunk(r, summaries[r.room_nid]) for r in selected]
    next_batch = f"o{offset + size}" if offset + size < total and size > 0 else None
    prev_batch = f"o{max(0, offset - size)}" if offset > 0 else None
    return PublicRoomsPage(chunk=page, next_batch=next_batch, prev_batch=prev_batch, total=total)


# --------------------------------------------------------------------------- across servers


@dataclass(frozen=True)
class PublicRoomsQuery:
    """A ``publicRooms`` request, as a client or another server sends it (GET query or POST body)."""

    limit: int | None = None
    since: str | None = None
    search_term: str | None = None
    room_types: list[str | None] | None = None

    def body(self) -> dict[str, Any]:
        """The POST body asking another server the same."""
        out: dict[str, Any] = {}
        if self.limit is not None:
            out["limit"] = self.limit
        if self.since is not None:
            out["since"] = self.since
        flt: dict[str, Any] = {}
        if self.search_term:
            flt["generic_search_term"] = self.search_term
        if self.room_types is not None:
            flt["room_types"] = self.room_types
        if flt:
            out["filter"] = flt
        return out


def check_public_rooms_body(body: Mapping[str, Any]) -> PublicRoomsQuery:
    """``POST .../publicRooms`` bodies (client-server and federation share the shape)."""
    limit = body.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise MatrixError(400, "M_INVALID_PARAM", "limit must be a non-negative integer")
    since = body.get("since")
    if since is not None and not isinstance(since, str):
        raise MatrixError(400, "M_INVALID_PARAM", "since must be a string")
    search_term: str | None = None
    room_types: list[str | None] | None = None
    flt = body.get("filter")
    if flt is not None:
        if not isinstance(flt, dict):
            raise MatrixError(400, "M_INVALID_PARAM", "filter must be an object")
        search_term = flt.get("generic_search_term")
        if search_term is not None and not isinstance(search_term, str):
            raise MatrixError(400, "M_INVALID_PARAM", "filter.generic_search_term must be a string")
        types = flt.get("room_types")
        if types is not None:
            if not isinstance(types, list) or not all(t is None or isinstance(t, str) for t in types):
                raise MatrixError(
                    400, "M_INVALID_PARAM", "filter.room_types must be a list of strings or null"
                )
            room_types = types
    return PublicRoomsQuery(limit=limit, since=since, search_term=search_term or None, room_types=room_types)


def check_public_rooms_params(*, limit: str | None, since: str | None) -> PublicRoomsQuery:
    """``GET .../publicRooms?limit=&since=``."""
    number = None
    if limit is not None and limit != "":
        number = ascii_uint(limit, max_digits=9)
        if number is None:
            raise MatrixError(400, "M_INVALID_PARAM", "limit must be a non-negative integer")
    return PublicRoomsQuery(limit=number, since=since or None)


def get_public_rooms_for_server(*, query: PublicRoomsQuery) -> PublicRoomsPage:
    """``GET``/``POST /_matrix/federation/v1/publicRooms``: our directory, if the operator shares it.

    ``allow_public_rooms_over_federation`` (Synapse's option, default false as in Synapse):
    otherwise 403 ``M_FORBIDDEN``.
    """
    if not settings.DAGMA.allow_public_rooms_over_federation:
        raise MatrixError(403, "M_FORBIDDEN", "This server does not share its room directory over federation")
    return get_public_rooms(
        limit=query.limit, since=query.since, search_term=query.search_term, room_types=query.room_types
    )


def _remote_page(server_name: str, answer: dict[str, Any]) -> PublicRoomsPage:
    """Another server's directory page, checked: ``chunk`` a list (entries without a room ID
    dropped), tokens strings, the estimate an integer."""
    chunk = answer.get("chunk")
    if not isinstance(chunk, list):
        raise MatrixError(502, "M_UNKNOWN", f"{server_name[:255]}: the publicRooms answer has no chunk list")
    rooms = [c for c in chunk if isinstance(c, dict) and isinstance(c.get("room_id"), str)]
    total = answer.get("total_room_count_estimate")
    next_batch = answer.get("next_batch")
    prev_batch = answer.get("prev_batch")
    return PublicRoomsPage(
        chunk=rooms,
        next_batch=next_batch if isinstance(next_batch, str) and next_batch else None,
        prev_batch=prev_batch if isinstance(prev_batch, str) and prev_batch else None,
        total=total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else len(rooms),
    )


def get_remote_public_rooms(*, server_name: str, query: PublicRoomsQuery, post: bool) -> PublicRoomsPage:
    """``/publicRooms?server=<another server>``: that server's directory, asked over federation
    (GET without a filter, POST with one, as the client asked)."""
    if not is_valid_server_name(server_name):
        raise MatrixError(400, "M_INVALID_PARAM", "server is not a valid server name")
    answer = query_remote_public_rooms(
        server_name=server_name,
        body=query.body() if post else None,
        params=None if post else {k: str(v) for k, v in query.body().items()},
    )
    return _remote_page(server_name, answer)

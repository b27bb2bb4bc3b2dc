"""The space hierarchy (spec: client-server API "Spaces", ``GET /rooms/{roomId}/hierarchy``).

A space lists its children with ``m.space.child`` state events whose ``via`` is a
non-empty list. The walk is breadth-first from the requested room, children in
the spec's order (``order`` string, then the child event's timestamp, then the
room ID), skipping rooms the user may not see and not descending past
``max_depth``. Rooms this server is in are summarised from their state; a child
room it is not in is asked of the servers in its ``via`` (spec server-server API
"Spaces": ``GET /_matrix/federation/v1/hierarchy/{roomId}``, at most
:data:`MAX_REMOTE_QUERIES` rooms per walk, a failing server skipped), and the
summaries of *its* children that answer carries are used for the next level.
The Embassy serves the same endpoint (:func:`get_hierarchy_for_server`).

One room's summary (spec v1.15 "Room summaries", ``GET /_matrix/client/v1/room_summary/
{roomIdOrAlias}``, :func:`get_room_summary`) follows the same rule and asks other servers the
same way.

Accessible (spec "Spaces", as Synapse): the user is joined or invited, or the
room's join rule is ``public``/``knock``/``knock_restricted``, or its history is
``world_readable``, or it is ``restricted`` to a room the user is joined to.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagcore.actions.directory import room_summary_chunk
from dagcore.actions.membership import resolve_room_and_servers
from dagcore.federation.client import FederationError
from dagcore.federation.queries import query_remote_hierarchy
from dagcore.http.errors import MatrixError
from dagcore.http.params import ascii_uint, count_param
from dagcore.protocol.identifiers import is_valid_room_id, is_valid_server_name
from dagcore.server_keys import get_server_name
from dagcore.store import directory as directory_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store import sync as sync_store

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
DEFAULT_MAX_DEPTH = 10
MAX_MAX_DEPTH = 20
#: Rooms one request walks at most, however the spaces nest (a cycle ends at rooms already seen).
MAX_ROOMS_WALKED = 1_000
_OPEN_RULES = ("public", "knock", "knock_restricted")
#: Rooms one walk asks other servers about, and servers of a ``via`` tried per room.
MAX_REMOTE_QUERIES = 10
MAX_VIA_TRIED = 3

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HierarchyPage:
    rooms: list[dict[str, Any]]
    next_batch: str | None


def _child_links(pdus: list[dict[str, Any]], suggested_only: bool) -> list[dict[str, Any]]:
    """The ``m.space.child`` events that link (non-empty ``via``), in the spec's order."""
    links = []
    for pdu in pdus:
        content = pdu.get("content")
        state_key = pdu.get("state_key")
        if not isinstance(content, dict) or not isinstance(state_key, str) or not state_key.startswith("!"):
            continue
        via = content.get("via")
        if not isinstance(via, list) or not via:
            continue
        if suggested_only and content.get("suggested") is not True:
            continue
        links.append(pdu)

    def key(pdu: dict[str, Any]) -> tuple[int, str, int, str]:
        order = pdu["content"].get("order")
        # Spec: a valid order is a string of at most 50 printable ASCII characters.
        valid = isinstance(order, str) and len(order) <= 50 and all(" " <= c <= "~" for c in order)
        ts = pdu.get("origin_server_ts")
        return (0 if valid else 1, order if valid else "", ts if isinstance(ts, int) else 0, pdu["state_key"])

    return sorted(links, key=key)


def _accessible(state: Mapping[str, dict[str, Any]], membership: str | None, joined_rooms: set[str]) -> bool:
    if membership in ("join", "invite"):
        return True
    rule = state.get("m.room.join_rules", {}).get("join_rule")
    if rule in _OPEN_RULES:
        return True
    if state.get("m.room.history_visibility", {}).get("history_visibility") == "world_readable":
        return True
    if rule == "restricted":
        allow = state.get("m.room.join_rules", {}).get("allow")
        if isinstance(allow, list):
            return any(
                isinstance(a, dict)
                and a.get("type") == "m.room_membership"
                and a.get("room_id") in joined_rooms
                for a in allow
            )
    return False


def _stripped(pdu: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": pdu.get("type"),
        "state_key": pdu.get("state_key"),
        "content": pdu.get("content"),
        "sender": pdu.get("sender"),
        "origin_server_ts": pdu.get("origin_server_ts"),
    }


def get_space_hierarchy(
    *,
    user_id: str,
    room_id: str,
    suggested_only: bool,
    limit: str | None,
    max_depth: str | None,
    from_token: str | None,
) -> HierarchyPage:
    """One page of the rooms under ``room_id`` (itself first), breadth-first."""
    size = count_param(limit, "limit", default=DEFAULT_LIMIT, maximum=MAX_LIMIT) or DEFAULT_LIMIT
    depth_limit = count_param(max_depth, "max_depth", default=DEFAULT_MAX_DEPTH, maximum=MAX_MAX_DEPTH)
    # The token is the position in the walk and the parameters it was made with (spec: a
    # token used with other suggested_only/max_depth values is M_INVALID_PARAM).
    offset = 0
    if from_token:
        parts = from_token.split("_")
        numbers = [n for p in parts if (n := ascii_uint(p, max_digits=9)) is not None]
        if len(parts) != 3 or len(numbers) != 3:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid from token")
        offset, token_depth, token_suggested = numbers
        if (token_depth, token_suggested) != (depth_limit, int(suggested_only)):
            raise MatrixError(400, "M_INVALID_PARAM", "from was made with other max_depth or suggested_only")

    memberships = {m.room_id: m.membership for m in sync_store.get_user_memberships(user_id)}
    joined_rooms = {r for r, m in memberships.items() if m == "join"}
    root_nid = room_store.get_room_nids([room_id]).get(room_id)
    if root_nid is None:
        raise MatrixError(403, "M_FORBIDDEN", "You may not view this room")

    remote = _RemoteRooms(suggested_only=suggested_only)
    walked: list[dict[str, Any]] = []
    seen = {room_id}
    # (room ID, nid if we are in the room, depth, via of the link that led here)
    queue: deque[tuple[str, int | None, int, list[str]]] = deque([(room_id, root_nid, 0, [])])
    while queue and len(walked) < MAX_ROOMS_WALKED:
        # One level's rooms at a time: their summaries, sizes and children in three queries.
        level = [queue.popleft() for _ in range(len(queue))]
        nids = [nid for _, nid, _, _ in level if nid is not None]
        summaries = directory_store.get_room_summaries(nids)
        counts = sync_store.get_membership_counts(nids)
        children = state_store.get_current_state_pdus(nids, types=["m.space.child"])
        next_level: list[tuple[str, int, list[str]]] = []
        for rid, nid, depth, via in level:
            if nid is None:
                summary = remote.summary(rid, via)
                if summary is None or not _remote_accessible(summary, memberships.get(rid), joined_rooms):
                    continue
                links = _child_links(summary["children_state"], suggested_only)
                chunk = {**summary, "children_state": [_stripped(p) for p in links]}
            else:
                state = summaries.get(nid, {})
                if not _accessible(state, memberships.get(rid), joined_rooms):
                    if rid == room_id:
                        raise MatrixError(403, "M_FORBIDDEN", "You may not view this room")
                    continue
                links = _child_links(children.get(nid, []), suggested_only)
                chunk = room_summary_chunk(rid, counts.get(nid, {}).get("join", 0), state)
                chunk["children_state"] = [_stripped(p) for p in links]
            walked.append(chunk)
            if depth < depth_limit:
                for pdu in links:
                    child = pdu["state_key"]
                    if child not in seen:
                        seen.add(child)
                        next_level.append((child, depth + 1, _via(pdu)))
        ours = _rooms_we_are_in(c for c, _, _ in next_level)
        queue.extend((c, ours.get(c), d, via) for c, d, via in next_level if c in ours or via)
    page = walked[offset : offset + size]
    more = offset + size < len(walked)
    next_batch = f"{offset + size}_{depth_limit}_{int(suggested_only)}" if more else None
    return HierarchyPage(rooms=page, next_batch=next_batch)


def _via(pdu: dict[str, Any]) -> list[str]:
    via = pdu["content"].get("via")
    return [v for v in via if isinstance(v, str) and is_valid_server_name(v)] if isinstance(via, list) else []


def _rooms_we_are_in(room_ids: Any) -> dict[str, int]:
    """``room ID -> nid`` of those rooms this server has joined members in (summarised locally)."""
    known = room_store.get_room_nids(room_ids)
    servers = directory_store.get_joined_servers_by_room(known.values())
    me = get_server_name()
    return {rid: nid for rid, nid in known.items() if me in servers.get(nid, set())}


def _remote_accessible(summary: Mapping[str, Any], membership: str | None, joined_rooms: set[str]) -> bool:
    """Spec "Spaces": what another server says of a room, checked for our user (as Synapse)."""
    if membership in ("join", "invite"):
        return True
    if summary.get("join_rule") in _OPEN_RULES or summary.get("world_readable") is True:
        return True
    if summary.get("join_rule") == "restricted":
        allowed = summary.get("allowed_room_ids")
        return isinstance(allowed, list) and any(r in joined_rooms for r in allowed)
    return False


_SUMMARY_STRINGS = (
    "name", "topic", "avatar_url", "canonical_alias", "join_rule", "room_type", "encryption", "room_version",
)  # fmt: skip


def _clean_summary(room_id: str, raw: Any) -> dict[str, Any] | None:
    """A room summary from another server, reduced to the fields of the spec with their types
    (``children_state`` kept as a list of objects; :func:`_child_links` filters it further)."""
    if not isinstance(raw, dict) or raw.get("room_id") != room_id:
        return None
    members = raw.get("num_joined_members")
    out: dict[str, Any] = {
        "room_id": room_id,
        "num_joined_members": members if isinstance(members, int) and not isinstance(members, bool) else 0,
        "world_readable": raw.get("world_readable") is True,
        "guest_can_join": raw.get("guest_can_join") is True,
    }
    for key in _SUMMARY_STRINGS:
        value = raw.get(key)
        if isinstance(value, str) and value and len(value) <= 4096:
            out[key] = value
    allowed = raw.get("allowed_room_ids")
    if isinstance(allowed, list):
        out["allowed_room_ids"] = [r for r in allowed if is_valid_room_id(r)]
    state = raw.get("children_state")
    out["children_state"] = (
        [e for e in state if isinstance(e, dict) and e.get("type") == "m.space.child"]
        if isinstance(state, list)
        else []
    )
    return out


class _RemoteRooms:
    """Summaries of rooms we are not in, asked of their ``via`` servers during one walk."""

    def __init__(self, *, suggested_only: bool) -> None:
        self.suggested_only = suggested_only
        self.queries = 0
        #: Children summaries a parent's answer carried (spec: "children": summaries).
        self.known: dict[str, dict[str, Any]] = {}

    def summary(self, room_id: str, via: list[str]) -> dict[str, Any] | None:
        carried = self.known.get(room_id)
        if carried is not None and carried["children_state"]:
            return carried
        me = get_server_name()
        for server in [v for v in via if v != me][:MAX_VIA_TRIED]:
            if self.queries >= MAX_REMOTE_QUERIES:
                break
            self.queries += 1
            try:
                answer = query_remote_hierarchy(
                    server_name=server, room_id=room_id, suggested_only=self.suggested_only
                )
            except FederationError as exc:
                logger.info("hierarchy of %s from %s: %s %s", room_id, server, exc, getattr(exc, "body", ""))
                continue
            room = _clean_summary(room_id, answer.get("room"))
            if room is None:
                logger.info("hierarchy of %s from %s: not a summary of that room", room_id, server)
                continue
            kids = answer.get("children")
            for kid in kids if isinstance(kids, list) else []:
                kid_id = kid.get("room_id") if isinstance(kid, dict) else None
                if isinstance(kid_id, str) and kid_id not in self.known:
                    cleaned = _clean_summary(kid_id, kid)
                    if cleaned is not None:
                        self.known[kid_id] = cleaned
            return room
        return carried  # a summary without its children is better than none


# --------------------------------------------------------------------------- one room's summary


def get_room_summary(*, user_id: str | None, room_id_or_alias: str, via: Sequence[str]) -> dict[str, Any]:
    """``GET /_matrix/client/v1/room_summary/{roomIdOrAlias}`` (spec v1.15, MSC3266).

    A room this server is in is summarised from its state; another is asked of the servers of
    ``via``, of the alias's answer and of the room ID (federation ``/hierarchy``, as for a
    space's child). Told only to whom the room is accessible (the hierarchy's rule); else 404
    ``M_NOT_FOUND``, as for a room that does not exist, so existence is not revealed. Without
    an access token: only rooms open to anyone, and never a request to another server.
    """
    if (
        user_id is None
        and room_id_or_alias.startswith("#")
        and not room_id_or_alias.endswith(f":{get_server_name()}")
    ):
        raise MatrixError(
            404, "M_NOT_FOUND", "Rooms of other servers are summarised for signed-in users only"
        )
    room_id, alias_servers = resolve_room_and_servers(room_id_or_alias)
    not_found = MatrixError(404, "M_NOT_FOUND", "Room not found")
    memberships = (
        {m.room_id: m.membership for m in sync_store.get_user_memberships(user_id)} if user_id else {}
    )
    joined_rooms = {r for r, m in memberships.items() if m == "join"}
    membership = memberships.get(room_id)
    nid = _rooms_we_are_in([room_id]).get(room_id)
    if nid is not None:
        state = directory_store.get_room_summaries([nid]).get(nid, {})
        # Without a token there is no membership nor joined room: only rooms open to anyone
        # (public, knock or knock_restricted, or world-readable history) pass.
        if not _accessible(state, membership, joined_rooms):
            raise not_found
        counts = sync_store.get_membership_counts([nid])
        summary = _summary_of(room_id, counts.get(nid, {}).get("join", 0), state)
        encryption = state.get("m.room.encryption", {}).get("algorithm")
        if isinstance(encryption, str) and encryption:
            summary["encryption"] = encryption
        room = room_store.get_room(room_id)
        if room is not None:
            summary["room_version"] = room.room_version
    else:
        if user_id is None:
            raise not_found
        domain = room_id.split(":", 1)[1] if ":" in room_id else ""
        servers = [s for s in dict.fromkeys([*via, *alias_servers, domain]) if is_valid_server_name(s)]
        remote = _RemoteRooms(suggested_only=False).summary(room_id, servers)
        if remote is None or not _remote_accessible(remote, membership, joined_rooms):
            raise not_found
        summary = {k: v for k, v in remote.items() if k != "children_state"}
    if user_id is not None:
        # Spec: the user's membership; Synapse says "leave" for a user who has none.
        summary["membership"] = membership or "leave"
    return summary


# --------------------------------------------------------------------------- serving other servers


def _accessible_to_server(
    state: Mapping[str, dict[str, Any]], origin: str, servers_in: set[str], allowed_servers: set[str]
) -> bool:
    """Spec "Spaces" (server-server): rooms the asking server "could feasibly peek/join", as
    Synapse decides it: open join rules or world-readable history, the server already in the
    room, or a restricted room whose allowed rooms it is in."""
    rule = state.get("m.room.join_rules", {}).get("join_rule")
    if rule in _OPEN_RULES:
        return True
    if state.get("m.room.history_visibility", {}).get("history_visibility") == "world_readable":
        return True
    if origin in servers_in:
        return True
    return rule == "restricted" and origin in allowed_servers


def _summary_of(room_id: str, joined_members: int, state: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """A room's summary as told to other servers and by ``room_summary``: the directory's
    chunk, with the allowed rooms of a restricted room."""
    chunk = room_summary_chunk(room_id, joined_members, state)
    if state.get("m.room.join_rules", {}).get("join_rule") in ("restricted", "knock_restricted"):
        chunk["allowed_room_ids"] = _allowed_room_ids(state)
    return chunk


def _allowed_room_ids(state: Mapping[str, dict[str, Any]]) -> list[str]:
    allow = state.get("m.room.join_rules", {}).get("allow")
    if not isinstance(allow, list):
        return []
    return [
        a["room_id"]
        for a in allow
        if isinstance(a, dict) and a.get("type") == "m.room_membership" and is_valid_room_id(a.get("room_id"))
    ]


def get_hierarchy_for_server(*, origin: str, room_id: str, suggested_only: bool) -> dict[str, Any]:
    """``GET /_matrix/federation/v1/hierarchy/{roomId}``: the room and its direct children
    (no pagination; the asking server filters for its user). 404 when we do not know the
    room or ``origin`` could not peek/join it."""
    if not is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room ID")
    root_nid = room_store.get_room_nids([room_id]).get(room_id)
    if root_nid is None:
        raise MatrixError(404, "M_NOT_FOUND", "Room not found")
    links = _child_links(
        state_store.get_current_state_pdus([root_nid], types=["m.space.child"]).get(root_nid, []),
        suggested_only,
    )
    child_nids = room_store.get_room_nids(p["state_key"] for p in links)
    nids = [root_nid, *child_nids.values()]
    summaries = directory_store.get_room_summaries(nids)
    counts = sync_store.get_membership_counts(nids)
    servers = directory_store.get_joined_servers_by_room(nids)
    # Restricted rooms name the rooms whose members may join: is the origin in one of those?
    allowed_ids = {r for nid in nids for r in _allowed_room_ids(summaries.get(nid, {}))}
    allowed_nids = room_store.get_room_nids(allowed_ids)
    allowed_servers = directory_store.get_joined_servers_by_room(allowed_nids.values())

    def accessible(nid: int) -> bool:
        state = summaries.get(nid, {})
        via_allowed = {
            s
            for r in _allowed_room_ids(state)
            if r in allowed_nids
            for s in allowed_servers.get(allowed_nids[r], set())
        }
        return _accessible_to_server(state, origin, servers.get(nid, set()), via_allowed)

    def chunk_of(rid: str, nid: int) -> dict[str, Any]:
        return _summary_of(rid, counts.get(nid, {}).get("join", 0), summaries.get(nid, {}))

    if not accessible(root_nid):
        raise MatrixError(404, "M_NOT_FOUND", "Room not found")
    room = chunk_of(room_id, root_nid)
    room["children_state"] = [_stripped(p) for p in links]
    children: list[dict[str, Any]] = []
    inaccessible: list[str] = []
    child_state = state_store.get_current_state_pdus(list(child_nids.values()), types=["m.space.child"])
    for pdu in links:
        rid = pdu["state_key"]
        nid = child_nids.get(rid)
        if nid is None:
            continue  # spec: rooms we cannot describe are left out
        if not accessible(nid):
            inaccessible.append(rid)
            continue
        chunk = chunk_of(rid, nid)
        chunk["children_state"] = [
            _stripped(p) for p in _child_links(child_state.get(nid, []), suggested_only)
        ]
        children.append(chunk)
    return {"room": room, "children": children, "inaccessible_children": inaccessible}

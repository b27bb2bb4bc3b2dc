"""The space hierarchy (spec: client-server API "Spaces", ``GET /rooms/{roomId}/hierarchy``).

A space lists its children with ``m.space.child`` state events whose ``via`` is a
non-empty list. The walk is breadth-first from the requested room, children in
the spec's order (``order`` string, then the child event's timestamp, then the
room ID), skipping rooms the user may not see and not descending past
``max_depth``. Only rooms this server knows are summarised (remote rooms need
federation's hierarchy API, which the Embassy does not serve yet).

Accessible (spec "Spaces", as Synapse): the user is joined or invited, or the
room's join rule is ``public``/``knock``/``knock_restricted``, or its history is
``world_readable``, or it is ``restricted`` to a room the user is joined to.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagcore.actions.directory import room_summary_chunk
from dagcore.http.errors import MatrixError
from dagcore.http.params import ascii_uint, count_param
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

    walked: list[dict[str, Any]] = []
    seen = {room_id}
    queue: deque[tuple[str, int, int]] = deque([(room_id, root_nid, 0)])
    while queue and len(walked) < MAX_ROOMS_WALKED:
        # One level's rooms at a time: their summaries, sizes and children in three queries.
        level = [queue.popleft() for _ in range(len(queue))]
        nids = [nid for _, nid, _ in level]
        summaries = directory_store.get_room_summaries(nids)
        counts = sync_store.get_membership_counts(nids)
        children = state_store.get_current_state_pdus(nids, types=["m.space.child"])
        next_level: list[tuple[str, int]] = []
        for rid, nid, depth in level:
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
                        next_level.append((child, depth + 1))
        known = room_store.get_room_nids(c for c, _ in next_level)
        queue.extend((c, known[c], d) for c, d in next_level if c in known)
    page = walked[offset : offset + size]
    more = offset + size < len(walked)
    next_batch = f"{offset + size}_{depth_limit}_{int(suggested_only)}" if more else None
    return HierarchyPage(rooms=page, next_batch=next_batch)

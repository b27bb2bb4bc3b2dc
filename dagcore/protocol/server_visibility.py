"""Which events another server may read from us (hardening class 6, federation side).

Spec: server-server API ("Retrieving events", backfill, ``get_missing_events``,
``state``/``state_ids``, ``event_auth``): the requesting server must be in the room,
and history visibility applies to servers as to their users — a server sees an event
its users could see (client-server API "History visibility"). Servers are not
"peeking": ``world_readable`` and ``shared`` history is visible to a server in the
room; ``invited`` and ``joined`` history only where one of its users was invited
(``invited``) or joined at the event.

Pure functions: callers supply the memberships at the event (the state before it)
and the room's current joined members.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dagcore.protocol.identifiers import parse_user_id

__all__ = ["server_in_room", "server_may_see_event"]

_RESTRICTED = ("invited", "joined")


def _server_of(user_id: str) -> str | None:
    try:
        return parse_user_id(user_id)[1]
    except ValueError:
        return None


def server_in_room(server_name: str, joined_user_ids: Iterable[str]) -> bool:
    """Whether the server has a joined member: only such servers may ask about the room."""
    return any(_server_of(u) == server_name for u in joined_user_ids)


def server_may_see_event(
    server_name: str,
    *,
    event_type: str,
    state_key: str | None,
    history_visibility: str | None,
    memberships_at_event: Mapping[str, str],
) -> bool:
    """Whether ``server_name`` may have the event (its membership and visibility as before it).

    ``history_visibility``: the room's setting in the state before the event (``None``:
    never set, which means ``shared``). ``memberships_at_event``: user ID -> membership in
    that state.
    """
    if event_type == "m.room.member" and state_key is not None and _server_of(state_key) == server_name:
        return True  # a server always learns of its own users' membership changes
    visibility = history_visibility or "shared"
    if visibility not in _RESTRICTED:
        return True
    for user_id, membership in memberships_at_event.items():
        if _server_of(user_id) != server_name:
            continue
        if membership == "join" or (visibility == "invited" and membership == "invite"):
            return True
    return False

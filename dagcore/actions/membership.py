"""Room membership from clients: join, leave, invite, kick, ban, unban, knock, forget.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-membership. Each
change is one ``m.room.member`` event authorised by the room's auth rules; a
refusal answers 403 M_FORBIDDEN with the rule's reason, an unknown room 404.

Rooms this server is not in (it has no joined member) are joined, knocked on and left
through other servers (``make_join``/``send_join`` and friends), and other servers'
users are invited through their server's ``/invite``: :mod:`dagcore.actions.remote_membership`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagcore.actions import remote_membership
from dagcore.actions.directory import resolve_local_alias
from dagcore.actions.persist_event import send_local_event
from dagcore.federation.queries import query_remote_alias
from dagcore.http.errors import MatrixError, not_in_room
from dagcore.models import Room, User
from dagcore.protocol.auth_rules import get_named_level, get_user_power_level
from dagcore.protocol.identifiers import is_valid_room_alias, is_valid_room_id, is_valid_user_id
from dagcore.protocol.room_versions import get_room_version
from dagcore.server_keys import get_server_name
from dagcore.store import accounts as account_store
from dagcore.store import events as event_store
from dagcore.store import remote_rooms as remote_room_store
from dagcore.store import room_admin as room_admin_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store import timeline

MAX_REASON_LENGTH = 2048


def _domain(identifier: str) -> str:
    return identifier.split(":", 1)[1] if ":" in identifier else ""


def resolve_room_id(room_id_or_alias: str) -> str:
    """A room ID, or a local alias resolved to its room (remote aliases need federation)."""
    if room_id_or_alias.startswith("#"):
        return resolve_local_alias(room_id_or_alias)
    if room_id_or_alias.startswith("!") and is_valid_room_id(room_id_or_alias):
        return room_id_or_alias
    raise MatrixError(400, "M_INVALID_PARAM", "Expected a room ID or a room alias")


def resolve_room_and_servers(room_id_or_alias: str) -> tuple[str, list[str]]:
    """A room ID and the servers an alias answer named (another server's alias is asked for
    through ``query/directory``)."""
    if room_id_or_alias.startswith("#") and not is_valid_room_alias(room_id_or_alias):
        # Before any lookup: a malformed alias (bad server name, no domain) is the client's error.
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room alias")
    if room_id_or_alias.startswith("#") and _domain(room_id_or_alias) not in ("", get_server_name()):
        target = query_remote_alias(alias=room_id_or_alias, server_name=_domain(room_id_or_alias))
        return target.room_id, [*target.servers, _domain(room_id_or_alias)]
    return resolve_room_id(room_id_or_alias), []


def _is_remote_room(room: Room | None, room_id: str) -> bool:
    """Whether membership changes must go through another server: a room we do not have (and
    that is not ours), one we only know out of band (an invite, a knock), or one we are no
    longer in while other servers still are."""
    our_name = get_server_name()
    if room is None:
        return _domain(room_id) != our_name
    if room.current_state_group is None:
        return True
    if remote_room_store.is_server_in_room(room, our_name):
        return False
    return any(s != our_name for s in room_store.get_joined_servers(room))


def _inviter_servers(room: Room | None, user_id: str) -> list[str]:
    """The server of whoever invited the user (it is in the room), if they are invited."""
    row = room_store.get_membership(room, user_id) if room is not None else None
    if row is None or row.membership not in ("invite", "knock"):
        return []
    stored = event_store.get_events_by_nids([row.event_id]).get(row.event_id)
    if stored is None:
        return []
    carried = stored.event.unsigned.get("invite_room_state") or stored.event.unsigned.get("knock_room_state")
    senders = [e.get("sender") for e in carried if isinstance(e, dict)] if isinstance(carried, list) else []
    return [_domain(u) for u in [stored.event.sender, *senders] if isinstance(u, str) and _domain(u)]


def _get_local_room(room_id: str) -> Room:
    room = room_store.get_room(room_id)
    if room is None:
        domain = _domain(room_id)
        if domain and domain != get_server_name():
            raise MatrixError(404, "M_NOT_FOUND", "Unknown room (rooms on other servers need federation)")
        # One of ours (or a v12 ID, which names no server): answer as a room you are not in.
        raise not_in_room()
    return room


def _check_reason(reason: Any) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise MatrixError(400, "M_INVALID_PARAM", "reason must be a string")
    return reason[:MAX_REASON_LENGTH]


def _profile_content(user_id: str) -> dict[str, Any]:
    """A local member's profile goes into their member events (spec: "m.room.member" displayname/avatar_url)."""
    if _domain(user_id) != get_server_name():
        return {}
    user = account_store.get_user(user_id)
    if user is None:
        return {}
    out: dict[str, Any] = {}
    if user.displayname:
        out["displayname"] = user.displayname
    if user.avatar_url:
        out["avatar_url"] = user.avatar_url
    return out


def _member_content(membership: str, *, reason: str | None, profile_of: str | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"membership": membership}
    if profile_of is not None:
        content.update(_profile_content(profile_of))
    if reason:
        content["reason"] = reason
    return content


def _send_member_event(*, room_id: str, sender: str, target: str, content: dict[str, Any]) -> None:
    """``sender`` changes ``target``'s membership: an ``m.room.member`` event keyed by the target."""
    send_local_event(
        room_id=room_id, sender=sender, event_type="m.room.member", content=content, state_key=target
    )


def _current_membership(room: Room, user_id: str) -> str | None:
    row = room_store.get_membership(room, user_id)
    return row.membership if row is not None else None


# --------------------------------------------------------------------------- join / knock / leave


def _restricted_join_authoriser(room: Room, user_id: str) -> str | None:
    """For restricted rooms (v8+): a local member who may invite, if the joiner is in an allowed room.

    spec: https://spec.matrix.org/v1.19/client-server-api/#restricted-rooms — the
    join is signed off by a resident server through ``join_authorised_via_users_server``.
    """
    state = state_store.get_current_state_events(
        room, [("m.room.join_rules", ""), ("m.room.power_levels", ""), ("m.room.create", "")]
    )
    rules = state.get(("m.room.join_rules", ""))
    if rules is None or rules.content.get("join_rule") not in ("restricted", "knock_restricted"):
        return None
    allow = rules.content.get("allow")
    allowed_rooms = [
        a.get("room_id")
        for a in (allow if isinstance(allow, list) else [])
        if isinstance(a, dict) and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)
    ]
    joined = set(room_store.get_rooms_for_user(user_id))
    if not any(r in joined for r in allowed_rooms):
        return None
    invite_level = get_named_level("invite", state)
    server_name = get_server_name()
    for member, _, _ in timeline.get_joined_members(room):
        if _domain(member) == server_name and get_user_power_level(member, state) >= invite_level:
            return member
    return None


def _refuse_blocked_room(room_id: str) -> None:
    """A room a server admin blocked takes no local joins, knocks or invites (Synapse's Block Room API)."""
    if room_admin_store.is_room_blocked(room_id):
        raise MatrixError(403, "M_FORBIDDEN", "This room has been blocked on this server")


def check_join_room(*, user: User, room_id_or_alias: str, reason: Any = None, via: Sequence[str] = ()) -> str:
    """Join a room (by ID or local alias); already joined with the same profile changes nothing."""
    reason = _check_reason(reason)
    room_id, alias_servers = resolve_room_and_servers(room_id_or_alias)
    _refuse_blocked_room(room_id)
    user_id = user.user_id
    known = room_store.get_room(room_id)
    if _is_remote_room(known, room_id):
        if user.is_guest:
            raise MatrixError(403, "M_FORBIDDEN", "Guests cannot join rooms on other servers")
        servers = remote_membership.membership_candidates(
            room_id=room_id, preferred=[*via, *alias_servers], extra=_inviter_servers(known, user_id)
        )
        return remote_membership.do_remote_join(
            user_id=user_id,
            room_id=room_id,
            servers=servers,
            content=_member_content("join", reason=reason, profile_of=user_id),
        )
    room = _get_local_room(room_id)
    if user.is_guest:
        access = state_store.get_current_state_events(room, [("m.room.guest_access", "")]).get(
            ("m.room.guest_access", "")
        )
        if access is None or access.content.get("guest_access") != "can_join":
            raise MatrixError(403, "M_FORBIDDEN", "Guest access is not allowed in this room")
    content = _member_content("join", reason=reason, profile_of=user_id)
    current = timeline.get_current_state_event(room, "m.room.member", user_id)
    if current is not None and current.event.membership == "join":
        unchanged = all(current.event.content.get(k) == content.get(k) for k in ("displayname", "avatar_url"))
        if unchanged:
            return room_id
    elif current is None or current.event.membership not in ("invite",):
        authoriser = _restricted_join_authoriser(room, user_id)
        if authoriser is not None:
            content["join_authorised_via_users_server"] = authoriser
    _send_member_event(room_id=room_id, sender=user_id, target=user_id, content=content)
    return room_id


def check_knock_room(
    *, user: User, room_id_or_alias: str, reason: Any = None, via: Sequence[str] = ()
) -> str:
    """Knock on a room whose join rule allows it (room versions 7+)."""
    reason = _check_reason(reason)
    room_id, alias_servers = resolve_room_and_servers(room_id_or_alias)
    _refuse_blocked_room(room_id)
    known = room_store.get_room(room_id)
    if _is_remote_room(known, room_id):
        servers = remote_membership.membership_candidates(
            room_id=room_id, preferred=[*via, *alias_servers], extra=_inviter_servers(known, user.user_id)
        )
        return remote_membership.do_remote_knock(
            user_id=user.user_id,
            room_id=room_id,
            servers=servers,
            content=_member_content("knock", reason=reason, profile_of=user.user_id),
        )
    room = _get_local_room(room_id)
    if not get_room_version(room.room_version, require_supported=False).knock_join_rule:
        raise MatrixError(403, "M_FORBIDDEN", "This room version does not support knocking")
    content = _member_content("knock", reason=reason, profile_of=user.user_id)
    _send_member_event(room_id=room_id, sender=user.user_id, target=user.user_id, content=content)
    return room_id


def check_leave_room(*, user_id: str, room_id: str, reason: Any = None) -> None:
    """Leave a room, or reject an invite, or retract a knock. Leaving twice changes nothing."""
    reason = _check_reason(reason)
    room = _get_local_room(room_id)
    membership = _current_membership(room, user_id)
    if membership in ("leave", "ban"):
        return
    if membership is None:
        raise MatrixError(403, "M_FORBIDDEN", "You are not a member of this room")
    if membership in ("invite", "knock") and _is_remote_room(room, room_id):
        # Rejecting an invite or retracting a knock in a room we are not in: through its servers.
        remote_membership.do_remote_leave(
            room=room,
            user_id=user_id,
            servers=remote_membership.membership_candidates(
                room_id=room_id, preferred=_inviter_servers(room, user_id)
            ),
            content=_member_content("leave", reason=reason),
        )
        return
    _send_member_event(
        room_id=room_id, sender=user_id, target=user_id, content=_member_content("leave", reason=reason)
    )


def check_forget_room(*, user_id: str, room_id: str) -> None:
    """Forget a room the user has left (spec: 400 while still in it)."""
    room = room_store.get_room(room_id)
    # Never in it (or no such room): nothing to forget, and the same answer for both.
    row = room_store.get_membership(room, user_id) if room is not None else None
    if room is None or row is None:
        return
    if row.membership in ("join", "invite", "knock"):
        raise MatrixError(400, "M_UNKNOWN", "You have not left this room")
    room_store.forget_room(room, user_id, membership_stream=row.stream_ordering)


# --------------------------------------------------------------------------- acting on others


def _check_target(user_id: Any) -> str:
    if not isinstance(user_id, str) or not is_valid_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", "user_id must be a valid user ID")
    return user_id


def check_invite_user(
    *, inviter: str, room_id: str, invitee: Any, reason: Any = None, is_direct: bool = False
) -> None:
    invitee = _check_target(invitee)
    reason = _check_reason(reason)
    room = _get_local_room(room_id)
    _refuse_blocked_room(room_id)
    if _current_membership(room, inviter) != "join":
        # Before any question about the invitee: outsiders learn nothing about the room.
        raise not_in_room()
    if _domain(invitee) != get_server_name():
        if _current_membership(room, invitee) == "invite":
            return  # already invited: nothing to change
        content = _member_content("invite", reason=reason)
        if is_direct:
            content["is_direct"] = True
        remote_membership.do_invite_remote_user(room=room, inviter=inviter, invitee=invitee, content=content)
        return
    if account_store.get_user(invitee) is None:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown user")
    if _current_membership(room, invitee) == "invite":
        return  # already invited: nothing to change
    content = _member_content("invite", reason=reason, profile_of=invitee)
    if is_direct:
        content["is_direct"] = True
    _send_member_event(room_id=room_id, sender=inviter, target=invitee, content=content)


def check_kick_user(*, sender: str, room_id: str, target: Any, reason: Any = None) -> None:
    target = _check_target(target)
    reason = _check_reason(reason)
    room = _get_local_room(room_id)
    if _current_membership(room, target) not in ("join", "invite", "knock"):
        # A "kick" of a banned user would be an unban; of an absent one, meaningless.
        raise MatrixError(403, "M_FORBIDDEN", "The user is not in the room")
    _send_member_event(
        room_id=room_id, sender=sender, target=target, content=_member_content("leave", reason=reason)
    )


def check_ban_user(*, sender: str, room_id: str, target: Any, reason: Any = None) -> None:
    target = _check_target(target)
    reason = _check_reason(reason)
    _get_local_room(room_id)
    _send_member_event(
        room_id=room_id, sender=sender, target=target, content=_member_content("ban", reason=reason)
    )


def check_unban_user(*, sender: str, room_id: str, target: Any, reason: Any = None) -> None:
    target = _check_target(target)
    reason = _check_reason(reason)
    room = _get_local_room(room_id)
    if _current_membership(room, target) != "ban":
        raise MatrixError(403, "M_FORBIDDEN", "The user is not banned")
    _send_member_event(
        room_id=room_id, sender=sender, target=target, content=_member_content("leave", reason=reason)
    )


def get_joined_room_ids(*, user_id: str) -> list[str]:
    return sorted(room_store.get_rooms_for_user(user_id, ("join",)))

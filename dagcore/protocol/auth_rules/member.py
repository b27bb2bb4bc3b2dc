"""The ``m.room.member`` rules: join, invite, leave (and kick/unban), ban, knock.

Spec: rule 5 of https://spec.matrix.org/v1.19/rooms/v12/#authorization-rules, rule 4 of
v6-v11, rule 5 of v1-v5. Per-version differences handled here:

* first join: the ``creator`` content key in v1-v10, the create event's sender from v11;
* ``knock`` join rule and membership: v7+ (leaving a knock is allowed from v7);
* ``restricted`` join rule and ``join_authorised_via_users_server``: v8+;
* ``knock_restricted``: v10+ (a join rule for both joins and knocks);
* creators of v12 rooms outrank everybody (see :mod:`.power`).
"""

from __future__ import annotations

from collections.abc import Callable

from dagcore.protocol.auth_rules.errors import AuthError
from dagcore.protocol.auth_rules.ids import domain_of
from dagcore.protocol.auth_rules.power import (
    CREATE_KEY,
    JOIN_RULES_KEY,
    State,
    get_named_level,
    get_user_power_level,
)
from dagcore.protocol.auth_rules.third_party_invite import check_third_party_invite
from dagcore.protocol.events import Event

#: ``(event, server_name) -> bool``: is the event validly signed by that server?
SignatureCheck = Callable[[Event, str], bool]


def membership_of(user_id: str, state: State) -> str:
    """The user's current membership; ``leave`` when the room has no member event for them."""
    member = state.get(("m.room.member", user_id))
    if member is None:
        return "leave"
    return member.membership or "leave"


def join_rule_of(state: State) -> str:
    """The current join rule. A room without m.room.join_rules is treated as ``invite``
    (the spec does not say; it is what every implementation does)."""
    event = state.get(JOIN_RULES_KEY)
    if event is None:
        return "invite"
    rule = event.content.get("join_rule")
    return rule if isinstance(rule, str) else "invite"


def check_member(event: Event, state: State, *, signature_check: SignatureCheck | None = None) -> None:
    """Allow (return) or reject (raise :class:`AuthError`) an m.room.member event."""
    version = event.room_version
    target = event.state_key
    membership = event.content.get("membership")
    if target is None or "membership" not in event.content:
        raise AuthError("m.room.member needs a state_key and content.membership")

    authoriser = event.content.get("join_authorised_via_users_server")
    if version.restricted_join_rule and "join_authorised_via_users_server" in event.content:
        server = domain_of(authoriser) if isinstance(authoriser, str) else None
        if server is None:
            raise AuthError("join_authorised_via_users_server is not a user ID")
        # The signature itself is checked with the other signatures on receipt
        # ("Validating hashes and signatures"); callers that hold keys may check it here too.
        if signature_check is not None and not signature_check(event, server):
            raise AuthError("the event is not signed by the join_authorised_via_users_server homeserver")

    sender = event.sender
    sender_membership = membership_of(sender, state)
    target_membership = membership_of(target, state)

    if membership == "join":
        _check_join(event, state, target_membership=target_membership)
        return
    if membership == "invite":
        if "third_party_invite" in event.content:
            check_third_party_invite(event, state, target_membership=target_membership)
            return
        if sender_membership != "join":
            raise AuthError("the inviter is not joined to the room")
        if target_membership in ("join", "ban"):
            raise AuthError(f"the invited user's membership is {target_membership}")
        if get_user_power_level(sender, state) >= get_named_level("invite", state):
            return
        raise AuthError("the inviter's power level is below the invite level")
    if membership == "leave":
        if sender == target:
            leavable = ("invite", "join", "knock") if version.knock_join_rule else ("invite", "join")
            if target_membership in leavable:
                return
            raise AuthError(f"cannot leave from membership {target_membership}")
        if sender_membership != "join":
            raise AuthError("the sender is not joined to the room")
        sender_level = get_user_power_level(sender, state)
        if target_membership == "ban" and sender_level < get_named_level("ban", state):
            raise AuthError("the sender's power level is below the ban level, so cannot unban")
        if (
            sender_level >= get_named_level("kick", state)
            and get_user_power_level(target, state) < sender_level
        ):
            return
        raise AuthError("the sender's power level is too low to kick this user")
    if membership == "ban":
        if sender_membership != "join":
            raise AuthError("the sender is not joined to the room")
        sender_level = get_user_power_level(sender, state)
        if (
            sender_level >= get_named_level("ban", state)
            and get_user_power_level(target, state) < sender_level
        ):
            return
        raise AuthError("the sender's power level is too low to ban this user")
    if membership == "knock" and version.knock_join_rule:
        join_rule = join_rule_of(state)
        knockable = ("knock", "knock_restricted") if version.knock_restricted_join_rule else ("knock",)
        if join_rule not in knockable:
            raise AuthError(f"cannot knock on a room with join rule {join_rule}")
        if sender != target:
            raise AuthError("a user can only knock for themselves")
        if sender_membership in ("ban", "invite", "join"):
            raise AuthError(f"cannot knock from membership {sender_membership}")
        return
    raise AuthError(f"unknown membership {membership!r}")


def _check_join(event: Event, state: State, *, target_membership: str) -> None:
    version = event.room_version
    create = state.get(CREATE_KEY)
    if create is not None and event.prev_event_ids == (create.event_id,):
        # The creator's own first join, whose only prev event is the create event.
        if version.implicit_room_creator:
            creator: object = create.sender
        else:
            creator = create.content.get("creator")
        if event.state_key == creator:
            return
    if event.sender != event.state_key:
        raise AuthError("a user can only join themselves")
    if target_membership == "ban":
        raise AuthError("sender is banned")
    join_rule = join_rule_of(state)
    invite_like = ("invite", "knock") if version.knock_join_rule else ("invite",)
    restricted_like: tuple[str, ...] = ()
    if version.restricted_join_rule:
        restricted_like = (
            ("restricted", "knock_restricted") if version.knock_restricted_join_rule else ("restricted",)
        )
    if join_rule in invite_like:
        if target_membership in ("invite", "join"):
            return
        raise AuthError(f"join rule is {join_rule} and the user is not invited")
    if join_rule in restricted_like:
        if target_membership in ("invite", "join"):
            return
        authoriser = event.content.get("join_authorised_via_users_server")
        if not isinstance(authoriser, str):
            raise AuthError("restricted join without join_authorised_via_users_server")
        # "a user with sufficient permission to invite other users": to invite, a user must
        # be joined and have at least the invite level.
        if membership_of(authoriser, state) != "join":
            raise AuthError("join_authorised_via_users_server is not joined to the room")
        if get_user_power_level(authoriser, state) < get_named_level("invite", state):
            raise AuthError("join_authorised_via_users_server cannot invite users")
        return
    if join_rule == "public":
        return
    raise AuthError(f"cannot join a room with join rule {join_rule}")

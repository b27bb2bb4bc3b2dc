"""The resident side of the membership handshakes: another server's user joins, leaves or
knocks on a room we are in, or another server invites one of our users.

Spec (server-server API): "Joining Rooms" (``make_join`` / ``send_join`` v2), "Knocking upon
a room" (``make_knock`` / ``send_knock``), "Leaving Rooms (Rejecting Invites)"
(``make_leave`` / ``send_leave`` v2), "Inviting to a room" (``invite`` v2) and
"Restricted rooms" (``join_authorised_via_users_server``).

``make_*`` answers an unsigned template built on the room's forward extremities and
current state, after checking that the event would be allowed. ``send_*`` checks the
body against the path (:mod:`dagcore.protocol.membership_events`), then the PDU's
format, signatures and hash (:func:`~dagcore.protocol.received_pdu.check_received_pdu`),
then the auth rules against current state before anything is stored, and persists it
through :func:`~dagcore.actions.persist_event.persist_received_event`: the federation
outbox (a subscriber of the after-commit seam) sends it on to the other servers.

An invite of our user is signed by us and stored "out of band" (an outlier plus the
membership row) when we are not in the room, so the user sees it in ``/sync``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagcore.actions.persist_event import (
    CREATE_KEY,
    MAX_PREV_EVENTS,
    EventRejected,
    RoomNotFound,
    persist_received_event,
)
from dagcore.actions.server_acl import check_server_acl
from dagcore.clock import now_ms
from dagcore.events_format import STRIPPED_STATE_KEYS, strip_state
from dagcore.events_persisted import EventsPersisted, announce_persisted
from dagcore.federation.keyring import get_keyring
from dagcore.http.errors import MatrixError, bad_json
from dagcore.models import Room
from dagcore.protocol.auth_rules import AuthError, auth_types_for_event, check_event_auth
from dagcore.protocol.auth_rules.power import get_named_level, get_user_power_level
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.events import Event, InvalidEvent, StateKey
from dagcore.protocol.hashing import compute_reference_hash, compute_room_id_v12, encode_base64
from dagcore.protocol.identifiers import parse_user_id
from dagcore.protocol.membership_events import (
    MembershipRequestError,
    check_invite_event,
    check_join_event,
    check_knock_event,
    check_leave_event,
)
from dagcore.protocol.received_pdu import DroppedPdu, check_received_pdu
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import EventFormat, RoomVersion, UnsupportedRoomVersion, get_room_version
from dagcore.protocol.signing import sign_event
from dagcore.server_keys import get_server_name, get_signing_key
from dagcore.store import accounts as account_store
from dagcore.store import events as event_store
from dagcore.store import remote_rooms as remote_room_store
from dagcore.store import room_admin as room_admin_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store import timeline, transaction
from dagcore.store.events import StoredEvent

logger = logging.getLogger("dagma.federation")

#: Stripped state entries accepted with an invite (spec recommends a handful).
MAX_INVITE_ROOM_STATE = 50
JOIN_RULES_KEY: StateKey = ("m.room.join_rules", "")
POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")


def _server_of(user_id: str) -> str:
    try:
        return parse_user_id(user_id)[1]
    except ValueError:
        return ""


def _membership_error(exc: MembershipRequestError) -> MatrixError:
    return MatrixError(exc.http_status, exc.errcode, exc.reason)


def _room_version_of(room: Room) -> RoomVersion:
    return get_room_version(room.room_version, require_supported=False)


def access_resident_room(room_id: str) -> Room:
    """A room we are in (a local user is joined); 404 ``M_NOT_FOUND`` otherwise: another server
    can only join, leave or knock through a server that is in the room."""
    room = room_store.get_room(room_id)
    if room is None or not remote_room_store.is_server_in_room(room, get_server_name()):
        raise MatrixError(404, "M_NOT_FOUND", "This server is not in that room")
    return room


def pdu_for_federation(stored: StoredEvent) -> dict[str, Any]:
    """A stored event as other servers get it: without our ``unsigned`` data, redacted if redacted."""
    pdu = {k: v for k, v in stored.event.pdu.items() if k != "unsigned"}
    if stored.redacted_by is not None:
        pdu = redact_pdu(pdu, stored.event.room_version)
    return pdu


# --------------------------------------------------------------------------- make_*


def _event_refs(room_version: RoomVersion, events: Sequence[tuple[str, dict[str, Any]]]) -> list[Any]:
    """``prev_events`` / ``auth_events`` as the room version writes them (v1/v2: ``[id, hashes]``)."""
    if room_version.event_format is EventFormat.V1:
        return [
            [event_id, {"sha256": encode_base64(compute_reference_hash(pdu, room_version))}]
            for event_id, pdu in events
        ]
    return [event_id for event_id, _ in events]


def _restricted_authoriser(room: Room, user_id: str, state: Mapping[StateKey, Event]) -> str | None:
    """For a restricted join: a local user who may invite (spec "Restricted rooms").

    Raises 403 ``M_FORBIDDEN`` when the user is in none of the allowed rooms we know, or
    400 ``M_UNABLE_TO_AUTHORISE_JOIN`` when we cannot tell (we are in none of them) or
    none of our users may invite.
    """
    rules = state.get(JOIN_RULES_KEY)
    allow = rules.content.get("allow") if rules is not None else None
    allowed = [
        a["room_id"]
        for a in (allow if isinstance(allow, list) else [])
        if isinstance(a, dict) and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)
    ]
    our_name = get_server_name()
    known = [r for r in (room_store.get_room(room_id) for room_id in allowed) if r is not None]
    known = [r for r in known if remote_room_store.is_server_in_room(r, our_name)]
    in_allowed = any(
        (m := room_store.get_membership(r, user_id)) is not None and m.membership == "join" for r in known
    )
    if not in_allowed:
        if not known:
            raise MatrixError(
                400, "M_UNABLE_TO_AUTHORISE_JOIN", "This server is in none of the rooms that allow the join"
            )
        raise MatrixError(403, "M_FORBIDDEN", "You are not in any of the rooms that allow joining this one")
    invite_level = get_named_level("invite", state)
    for member, _, _ in timeline.get_joined_members(room):
        if _server_of(member) == our_name and get_user_power_level(member, state) >= invite_level:
            return member
    raise MatrixError(400, "M_UNABLE_TO_AUTHORISE_JOIN", "No user of this server may authorise the join")


def get_membership_template(
    *, origin: str, room_id: str, user_id: str, membership: str, supported_versions: Sequence[str] | None
) -> dict[str, Any]:
    """``make_join`` / ``make_leave`` / ``make_knock``: an unsigned event for the origin's user to sign.

    ``supported_versions``: the ``ver`` query parameters (``None`` for ``make_leave``,
    which has none). 403 for another server's user; 404 for a room we are not in;
    400 ``M_INCOMPATIBLE_ROOM_VERSION`` when the room's version is not among ``ver``;
    403 when the auth rules would refuse the event.
    """
    if _server_of(user_id) != origin:
        raise MatrixError(
            403, "M_FORBIDDEN", f"{user_id[:255]} is not a user of the requesting server {origin[:255]}"
        )
    room = access_resident_room(room_id)
    check_server_acl(room=room, origin=origin)  # spec "Server Access Control Lists": 403
    room_version = _room_version_of(room)
    if supported_versions is not None and room_version.identifier not in supported_versions:
        raise MatrixError(
            400,
            "M_INCOMPATIBLE_ROOM_VERSION",
            f"The room's version {room_version.identifier} is not one your server supports",
            room_version=room_version.identifier,
        )
    if membership == "knock" and not room_version.knock_join_rule:
        raise MatrixError(
            400,
            "M_INCOMPATIBLE_ROOM_VERSION",
            f"Room version {room_version.identifier} has no knocking",
            room_version=room_version.identifier,
        )
    content: dict[str, Any] = {"membership": membership}
    state = state_store.get_current_state_events(
        room, [CREATE_KEY, JOIN_RULES_KEY, POWER_LEVELS_KEY, ("m.room.member", user_id)]
    )
    if membership == "join" and room_version.restricted_join_rule:
        rules = state.get(JOIN_RULES_KEY)
        rule = rules.content.get("join_rule") if rules is not None else None
        current = state.get(("m.room.member", user_id))
        current_membership = current.membership if current is not None else None
        if rule in ("restricted", "knock_restricted") and current_membership not in ("join", "invite"):
            content["join_authorised_via_users_server"] = _restricted_authoriser(room, user_id, state)
    auth_keys = auth_types_for_event(
        room_version, event_type="m.room.member", state_key=user_id, sender=user_id, content=content
    )
    entries = state_store.get_current_state_entries(room, [CREATE_KEY, *auth_keys])
    auth_events = [entries[k][1] for k in auth_keys if k in entries]
    extremities = event_store.get_forward_extremities(room)[:MAX_PREV_EVENTS]
    prev_pdus = event_store.get_events_by_ids([e.event_id for e in extremities])
    template: dict[str, Any] = {
        "type": "m.room.member",
        "room_id": room_id,
        "sender": user_id,
        "state_key": user_id,
        "content": content,
        "depth": max((e.depth for e in extremities), default=0) + 1,
        "origin_server_ts": now_ms(),
        "prev_events": _event_refs(
            room_version, [(e.event_id, prev_pdus[e.event_id].event.pdu) for e in extremities]
        ),
        "auth_events": _event_refs(room_version, [(a.event_id, a.pdu) for a in auth_events]),
    }
    if not room_version.updated_redaction_rules:
        template["origin"] = origin
    # Would the rules take it? Asked now, so a refusal is a clear 403 rather than a failed send_*.
    try:
        check_event_auth(
            Event(dict(template), room_version, "$template"), {k: e for k, (_, e) in entries.items()}
        )
    except (AuthError, InvalidEvent) as exc:
        raise MatrixError(403, "M_FORBIDDEN", f"The {membership} would not be allowed: {exc}") from None
    return {"event": template, "room_version": room_version.identifier}


# --------------------------------------------------------------------------- send_*


def _check_signed(pdu: Mapping[str, Any], *, room_version: RoomVersion, event_id: str) -> Event:
    """Steps 1-3 of the receipt checks; a request whose event fails them is refused, nothing stored."""
    try:
        received = check_received_pdu(
            pdu,
            room_version=room_version,
            get_verify_key=get_keyring().get_verify_key,
            expected_event_id=event_id,
        )
    except DroppedPdu as exc:
        forbidden = "signature" in exc.reason
        raise MatrixError(
            403 if forbidden else 400, "M_FORBIDDEN" if forbidden else "M_BAD_JSON", exc.reason
        ) from None
    if received.redacted_for_hash_mismatch:
        raise bad_json("The event's content does not match its hash")
    return received.event


def _check_allowed_now(room: Room, event: Event) -> None:
    """The auth rules against the room's current state, before anything is stored."""
    keys = auth_types_for_event(
        event.room_version,
        event_type=event.type,
        state_key=event.state_key,
        sender=event.sender,
        content=event.content,
    )
    state = state_store.get_current_state_events(room, [CREATE_KEY, *keys])
    try:
        check_event_auth(event, state)
    except AuthError as exc:
        raise MatrixError(403, "M_FORBIDDEN", f"The event is not allowed: {exc}") from None


def _persist_membership(room: Room, event: Event, *, relayed_for: str | None) -> StoredEvent:
    """``relayed_for``: the server whose send_join/leave/knock we accepted (the event goes on
    to the room's other servers); None for an invite, which its sender's server sends on."""
    _check_allowed_now(room, event)
    try:
        persisted = persist_received_event(event, relayed_for=relayed_for)
    except RoomNotFound:
        raise MatrixError(404, "M_NOT_FOUND", "This server is not in that room") from None
    except EventRejected as exc:
        raise MatrixError(403, "M_FORBIDDEN", exc.reason) from None
    if persisted.rejected_reason is not None or persisted.soft_failed:
        raise MatrixError(
            403, "M_FORBIDDEN", f"The event is not allowed: {persisted.rejected_reason or 'soft-failed'}"
        )
    stored = event_store.get_event_by_id(event.event_id)
    assert stored is not None
    return stored


def _checked_send(
    check: Callable[..., Mapping[str, Any]], *, origin: str, room_id: str, event_id: str, pdu: Any
) -> tuple[Room, RoomVersion, Mapping[str, Any]]:
    """The room (ours to answer for), its version and the body ``check`` (a
    ``membership_events`` check) accepted against the path and the requesting server."""
    room = access_resident_room(room_id)
    check_server_acl(room=room, origin=origin)  # spec "Server Access Control Lists": 403
    room_version = _room_version_of(room)
    try:
        checked = check(
            pdu, path_room_id=room_id, path_event_id=event_id, room_version=room_version, origin=origin
        )
    except MembershipRequestError as exc:
        raise _membership_error(exc) from None
    return room, room_version, checked


def do_send_join(*, origin: str, room_id: str, event_id: str, pdu: Any) -> dict[str, Any]:
    """``PUT /_matrix/federation/v2/send_join``: persist the join; answer the room's state before
    it, the auth chain of that state, and the event as we signed it (restricted joins)."""
    room, room_version, checked = _checked_send(
        check_join_event, origin=origin, room_id=room_id, event_id=event_id, pdu=pdu
    )
    body = dict(checked)
    authoriser = body["content"].get("join_authorised_via_users_server")
    if room_version.restricted_join_rule and authoriser is not None:
        if not isinstance(authoriser, str) or _server_of(authoriser) != get_server_name():
            raise MatrixError(403, "M_FORBIDDEN", "The join is authorised by a user of another server")
        # Spec "Restricted rooms": the resident server of the authorising user signs the join.
        body = sign_event(
            body, room_version=room_version, server_name=get_server_name(), signing_key=get_signing_key()
        )
    event = _check_signed(body, room_version=room_version, event_id=event_id)
    stored = _persist_membership(room, event, relayed_for=origin)
    state_nids = state_store.get_state_ids(stored.state_group_before) if stored.state_group_before else {}
    chains = event_store.get_auth_chains(state_nids.values())
    chain_nids = {n for chain in chains.values() for n in chain}
    events = event_store.get_events_by_nids({*state_nids.values(), *chain_nids, *_auth_nids(stored)})
    return {
        "origin": get_server_name(),
        "members_omitted": False,
        "servers_in_room": sorted(room_store.get_joined_servers(room)),
        "state": [pdu_for_federation(events[n]) for n in state_nids.values() if n in events],
        "auth_chain": [pdu_for_federation(events[n]) for n in sorted(chain_nids) if n in events],
        "event": pdu_for_federation(stored),
    }


def _auth_nids(stored: StoredEvent) -> list[int]:
    return list(event_store.get_nids_for_event_ids(stored.event.auth_event_ids).values())


def do_send_leave(*, origin: str, room_id: str, event_id: str, pdu: Any) -> dict[str, Any]:
    """``PUT /_matrix/federation/v2/send_leave``: persist the leave; answer ``{}``."""
    room, room_version, checked = _checked_send(
        check_leave_event, origin=origin, room_id=room_id, event_id=event_id, pdu=pdu
    )
    _persist_membership(
        room, _check_signed(checked, room_version=room_version, event_id=event_id), relayed_for=origin
    )
    return {}


def stripped_room_state(room: Room) -> list[dict[str, Any]]:
    """The spec's recommended stripped state of a room (invites and knocks)."""
    state = state_store.get_current_state_events(room, STRIPPED_STATE_KEYS)
    return strip_state(state.values())


def do_send_knock(*, origin: str, room_id: str, event_id: str, pdu: Any) -> dict[str, Any]:
    """``PUT /_matrix/federation/v1/send_knock``: persist the knock; answer the stripped state."""
    room, room_version, checked = _checked_send(
        check_knock_event, origin=origin, room_id=room_id, event_id=event_id, pdu=pdu
    )
    _persist_membership(
        room, _check_signed(checked, room_version=room_version, event_id=event_id), relayed_for=origin
    )
    return {"knock_room_state": stripped_room_state(room)}


# --------------------------------------------------------------------------- invite


def _check_invite_room_state(value: Any, *, room_id: str, room_version: RoomVersion) -> list[dict[str, Any]]:
    """The inviting server's view of the room, kept for the invitee's ``/sync``.

    v12 room IDs are the create event's hash: the create event must be there, a full
    PDU that hashes to the room ID (else the invite could name a room it is not in).
    """
    if value is None:
        value = []
    if not isinstance(value, list) or len(value) > MAX_INVITE_ROOM_STATE:
        raise bad_json(f"invite_room_state must be a list of at most {MAX_INVITE_ROOM_STATE} events")
    entries: list[dict[str, Any]] = []
    create: dict[str, Any] | None = None
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise bad_json("invite_room_state entries must be events")
        if item.get("type") == "m.room.create" and item.get("state_key") == "":
            create = item
        entries.append(item)
    if create is not None:
        create_version = (
            create.get("content", {}).get("room_version", "1")
            if isinstance(create.get("content"), dict)
            else None
        )
        if create_version != room_version.identifier:
            raise bad_json("The create event in invite_room_state is of another room version")
        if (
            "room_id" in create
            and create["room_id"] != room_id
            and not room_version.room_id_is_create_event_hash
        ):
            raise bad_json("The create event in invite_room_state is of another room")
    if room_version.room_id_is_create_event_hash:
        if create is None:
            raise bad_json("invite_room_state must hold the room's create event")
        try:
            matches = compute_room_id_v12(create) == room_id
        except (ValueError, TypeError, KeyError):
            matches = False
        if not matches:
            raise bad_json("The create event in invite_room_state is not the create event of this room")
    return entries


def do_receive_invite(*, origin: str, room_id: str, event_id: str, body: Any) -> dict[str, Any]:
    """``PUT /_matrix/federation/v2/invite``: sign the invite of our user and keep it for their /sync."""
    if not isinstance(body, dict):
        raise bad_json("Expected a JSON object")
    if room_admin_store.is_room_blocked(room_id):
        # Synapse's Block Room API: a blocked room takes no local members, invited ones included.
        raise MatrixError(403, "M_FORBIDDEN", "This room has been blocked on this server")
    known = room_store.get_room(room_id)
    if known is not None:
        # A room we hold state of: its ACL applies to invites into it too (Synapse checks it).
        check_server_acl(room=known, origin=origin)
    try:
        room_version = get_room_version(body.get("room_version"))
    except UnsupportedRoomVersion:
        raise MatrixError(
            400,
            "M_INCOMPATIBLE_ROOM_VERSION",
            "This server does not support the room's version",
            room_version=str(body.get("room_version"))[:32],
        ) from None
    try:
        checked = check_invite_event(
            body.get("event"),
            path_room_id=room_id,
            path_event_id=event_id,
            room_version=room_version,
            origin=origin,
            our_server_name=get_server_name(),
        )
    except MembershipRequestError as exc:
        raise _membership_error(exc) from None
    invitee = str(checked["state_key"])
    if not _is_local_user(invitee):
        raise MatrixError(404, "M_NOT_FOUND", "Unknown user")
    room_state = _check_invite_room_state(
        body.get("invite_room_state"), room_id=room_id, room_version=room_version
    )
    event = _check_signed(checked, room_version=room_version, event_id=event_id)
    signed = sign_event(
        event.pdu, room_version=room_version, server_name=get_server_name(), signing_key=get_signing_key()
    )
    room = room_store.get_room(room_id)
    if (
        room is not None
        and remote_room_store.is_server_in_room(room, get_server_name())
        and _knows_prev_events(event)
    ):
        # We are in the room and up to date with it: the invite is an ordinary event of it,
        # checked like any other.
        _persist_membership(room, Event(signed, room_version, event_id), relayed_for=None)
    else:
        stored_pdu = {**signed, "unsigned": {**event.unsigned, "invite_room_state": room_state}}
        store_out_of_band_membership(
            Event(stored_pdu, room_version, event_id), creator=_creator_of(room_state, event)
        )
    return {"event": signed}


def _knows_prev_events(event: Event) -> bool:
    prevs = event_store.get_events_by_ids(event.prev_event_ids)
    return all(p in prevs and not prevs[p].outlier for p in event.prev_event_ids)


def _is_local_user(user_id: str) -> bool:
    return account_store.get_user(user_id) is not None


def _creator_of(room_state: Sequence[Mapping[str, Any]], event: Event) -> str:
    for item in room_state:
        if item.get("type") == "m.room.create" and isinstance(item.get("sender"), str):
            return str(item["sender"])
    return event.sender


# --------------------------------------------------------------------------- out of band


def store_out_of_band_membership(event: Event, *, creator: str) -> int:
    """Store a member event of a room whose state we do not hold: an outlier, plus the
    membership row of its target, at a new stream position so ``/sync`` reports it.

    Used for invites of our users from other servers, and for our users' knocks and
    leaves (invite rejections) through other servers. Returns the stream position.
    """
    assert event.state_key is not None and event.membership is not None
    with transaction.atomic():
        room_store.lock_room_for_writing(event.room_id)
        room = room_store.get_room_for_update(event.room_id)
        if room is None:
            room = room_store.insert_room(
                room_id=event.room_id,
                room_version=event.room_version.identifier,
                creator=creator,
                created_ts=now_ms(),
            )
        existing = event_store.get_event_by_id(event.event_id)
        if existing is not None:
            return existing.stream_ordering or 0
        nid = event_store.allocate_event_nid()
        remote_room_store.set_out_of_band_membership(
            room,
            user_id=event.state_key,
            membership=event.membership,
            event_nid=nid,
            is_local=_server_of(event.state_key) == get_server_name(),
        )
        stream = event_store.insert_event(
            nid=nid,
            room=room,
            event=event,
            received_ts=now_ms(),
            outlier=True,
            rejected_reason=None,
            soft_failed=False,
            state_group_before=None,
            state_group=None,
            auth_chain=None,
            canonical_json=encode_canonical_json(event.pdu).decode(),
            # Outliers are never in a timeline; the position is what /sync's membership
            # changes are found by (the row above is settled at it).
            assign_stream_ordering=True,
        )
        assert stream is not None
        state_store.settle_pending_memberships(room, stream)
        # Not ours to relay: the other servers have it from the server that handed it over.
        announce_persisted(
            EventsPersisted.of_event(event, room_nid=room.pk, stream_ordering=stream, local=False)
        )
    return stream

"""Our users' memberships in rooms that live on other servers: join, knock, leave (and reject
an invite), and invites of other servers' users.

Spec (server-server API): "Joining Rooms" (``make_join`` then ``send_join`` v2), "Knocking
upon a room", "Leaving Rooms (Rejecting Invites)", "Inviting to a room" (``invite`` v2).

A join asks each candidate server in turn (``via`` / ``server_name``, the servers an alias
answer named, the inviter's server, the room ID's server) and takes the first that gives a
valid answer: the template must be for our user and room, the room version one we support,
and **every** event of the answer must pass the receipt checks (format, signatures through
the keyring, hashes) and the auth rules, the create event must be the room's (v12: its hash
is the room ID). The auth chain and state are stored as outliers and become the room's state
before our join, all in one transaction: an invalid answer stores nothing, and the error
names the server.

A join runs in a worker thread, not in the client's request: a client that disconnects does
not abort it, and a retried ``/join`` of the same user and room attaches to the join already
running in this process (a retry landing on another process finds the room joined once the
first commits, or runs its own handshake: the resident server answers both the same way).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from dagcore.actions.persist_event import (
    CREATE_KEY,
    MAX_PREV_EVENTS,
    EventRejected,
    RoomNotFound,
    build_local_pdu,
    persist_received_event,
    persist_received_outliers,
)
from dagcore.actions.resident_membership import (
    pdu_for_federation,
    store_out_of_band_membership,
    stripped_room_state,
)
from dagcore.clock import now_ms
from dagcore.federation.client import (
    FederationError,
    FederationHttpError,
    encode_path,
    get_federation_client,
)
from dagcore.federation.keyring import get_keyring, signature_key_requests
from dagcore.http.errors import MatrixError
from dagcore.models import Room
from dagcore.protocol.auth_rules import AuthError, auth_types_for_event, check_event_auth
from dagcore.protocol.events import Event, InvalidEvent, StateKey
from dagcore.protocol.hashing import add_content_hash, compute_room_id_v12
from dagcore.protocol.identifiers import parse_user_id
from dagcore.protocol.pdu_validation import InvalidPdu, check_pdu_format
from dagcore.protocol.received_pdu import DroppedPdu, check_received_pdu
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import (
    KNOWN_ROOM_VERSIONS,
    EventFormat,
    RoomVersion,
    UnsupportedRoomVersion,
    get_room_version,
)
from dagcore.protocol.signing import SignatureError, VerifyKeyLookup, sign_event, verify_json_signature
from dagcore.server_keys import get_server_name, get_signing_key
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import state as state_store
from dagcore.store import transaction

logger = logging.getLogger("dagma.federation")

#: ``ver`` of make_join / make_knock: every room version we can take part in (2-12).
SUPPORTED_VERSIONS = [v.identifier for v in KNOWN_ROOM_VERSIONS.values() if v.supported]
#: A send_join answer holds the room's whole state and auth chain.
SEND_JOIN_MAX_BYTES = 128 * 1024 * 1024
SEND_JOIN_TIMEOUT_S = 300.0
MEMBERSHIP_TIMEOUT_S = 60.0
#: Concurrent remote joins per process (each holds a database connection while it persists).
MAX_CONCURRENT_JOINS = 8

T = TypeVar("T")


class InvalidRemoteAnswer(Exception):
    """A server's answer is not one we can use; nothing of it was stored."""

    def __init__(self, server_name: str, reason: str) -> None:
        super().__init__(f"{server_name[:255]}: {reason}")
        self.server_name = server_name
        self.reason = reason


def _server_of(identifier: str) -> str:
    try:
        return parse_user_id(identifier)[1]
    except ValueError:
        return identifier.split(":", 1)[1] if ":" in identifier else ""


def membership_candidates(*, room_id: str, preferred: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The servers to ask, in order, without duplicates and without us."""
    ours = get_server_name()
    room_server = [] if not room_id.startswith("!") or ":" not in room_id else [room_id.split(":", 1)[1]]
    out: list[str] = []
    for server in [*preferred, *extra, *room_server]:
        if server and server != ours and server not in out:
            out.append(server)
    return out


# --------------------------------------------------------------------------- detached runs

_executor = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_JOINS, thread_name_prefix="dagma-membership")
_running: dict[tuple[str, str, str], Future[Any]] = {}
#: How many callers wait on each running handshake (the first and its retries).
_waiting: dict[tuple[str, str, str], int] = {}
_running_lock = threading.Lock()


def _with_own_connection(work: Callable[[], T]) -> T:
    try:
        return work()
    finally:
        # The worker thread's connection is its own: hand it back when the handshake is done.
        transaction.release_connection()


def run_detached(key: tuple[str, str, str], work: Callable[[], T]) -> T:
    """Run ``work`` in a worker thread and wait for it; a second call with the same ``key``
    while the first runs waits for the first's outcome instead of starting another."""
    started = False
    with _running_lock:
        future = _running.get(key)
        if future is None:
            future = _executor.submit(_with_own_connection, work)
            _running[key] = future
            started = True
        _waiting[key] = _waiting.get(key, 0) + 1
    if started:

        def forget(done: Future[Any], key: tuple[str, str, str] = key) -> None:
            with _running_lock:
                if _running.get(key) is done:
                    del _running[key]

        # Outside the lock: a handshake that is over already (a refused address fails at
        # once) runs ``forget`` here, in this thread, and the lock is not reentrant.
        future.add_done_callback(forget)
    try:
        result: T = future.result()
    finally:
        with _running_lock:
            _waiting[key] -= 1
            if not _waiting[key]:
                del _waiting[key]
    return result


def running_handshakes() -> dict[tuple[str, str, str], int]:
    """``(kind, user, room) -> callers waiting`` of the handshakes running in this process."""
    with _running_lock:
        return {key: _waiting.get(key, 0) for key in _running}


# --------------------------------------------------------------------------- building and checking


def _answer_version(server: str, answer: Mapping[str, Any], *, default: str = "1") -> RoomVersion:
    identifier = answer.get("room_version", default)
    try:
        return get_room_version(identifier)
    except UnsupportedRoomVersion:
        raise InvalidRemoteAnswer(server, f"room version {str(identifier)[:32]!r} is not supported") from None


def build_from_template(
    server: str,
    template: Any,
    *,
    room_version: RoomVersion,
    room_id: str,
    user_id: str,
    membership: str,
    content: Mapping[str, Any],
) -> Event:
    """Our user's member event from a ``make_*`` template: hashed and signed by us."""
    if not isinstance(template, dict):
        raise InvalidRemoteAnswer(server, "the answer has no event template")
    template_content = template.get("content")
    if (
        template.get("type") != "m.room.member"
        or template.get("room_id") != room_id
        or template.get("sender") != user_id
        or template.get("state_key") != user_id
        or not isinstance(template_content, dict)
        or template_content.get("membership") != membership
    ):
        raise InvalidRemoteAnswer(server, f"the template is not a {membership} of {user_id} in {room_id}")
    new_content: dict[str, Any] = {**content, "membership": membership}
    authoriser = template_content.get("join_authorised_via_users_server")
    if membership == "join" and room_version.restricted_join_rule and isinstance(authoriser, str):
        new_content["join_authorised_via_users_server"] = authoriser
    our_name = get_server_name()
    pdu: dict[str, Any] = {
        "type": "m.room.member",
        "room_id": room_id,
        "sender": user_id,
        "state_key": user_id,
        "content": new_content,
        "prev_events": template.get("prev_events"),
        "auth_events": template.get("auth_events"),
        "depth": template.get("depth"),
        "origin_server_ts": now_ms(),
    }
    if not room_version.updated_redaction_rules:
        pdu["origin"] = our_name
    if room_version.event_format is EventFormat.V1:
        pdu["event_id"] = f"${secrets.token_urlsafe(18)}:{our_name}"
    pdu = sign_event(
        add_content_hash(pdu), room_version=room_version, server_name=our_name, signing_key=get_signing_key()
    )
    try:
        check_pdu_format(pdu, room_version)
        return Event(pdu, room_version)
    except (InvalidPdu, InvalidEvent) as exc:
        raise InvalidRemoteAnswer(server, f"the template does not make a valid event: {exc}") from None


def _make_membership(
    server: str,
    membership: str,
    *,
    room_id: str,
    user_id: str,
    content: Mapping[str, Any],
    known_version: RoomVersion | None = None,
) -> tuple[RoomVersion, Event]:
    """The first half of every handshake: ``make_join``/``make_knock``/``make_leave`` at
    ``server``, its room version checked, and our signed member event built from the template.

    Joins and knocks tell the resident which versions we speak (``ver``); a leave is of a room
    whose version we already know (from its invite), and the answer must agree with it.
    """
    made = get_federation_client().get_json(
        server,
        encode_path(f"/_matrix/federation/v1/make_{membership}/{{}}/{{}}", room_id, user_id),
        query=None if known_version else {"ver": SUPPORTED_VERSIONS},
        timeout=MEMBERSHIP_TIMEOUT_S,
    )
    if known_version is None:
        room_version = _answer_version(server, made)
    else:
        room_version = _answer_version(server, made, default=known_version.identifier)
        if room_version.identifier != known_version.identifier:
            raise InvalidRemoteAnswer(server, "the room version differs from the invite's")
    if membership == "knock" and not room_version.knock_join_rule:
        raise InvalidRemoteAnswer(server, f"room version {room_version.identifier} has no knocking")
    event = build_from_template(
        server, made.get("event"), room_version=room_version, room_id=room_id, user_id=user_id,
        membership=membership, content=content,
    )  # fmt: skip
    return room_version, event


def _verify(
    server: str,
    pdu: Any,
    *,
    room_version: RoomVersion,
    room_id: str,
    expected: str | None = None,
    get_verify_key: VerifyKeyLookup | None = None,
) -> Event:
    """Receipt checks 1-3 on one event of an answer (signatures of its sender's server, not the relayer's)."""
    try:
        received = check_received_pdu(
            pdu,
            room_version=room_version,
            get_verify_key=get_verify_key or get_keyring().get_verify_key,
            expected_event_id=expected,
        )
    except DroppedPdu as exc:
        raise InvalidRemoteAnswer(server, f"an event of the answer is invalid: {exc.reason}") from None
    if received.event.room_id != room_id:
        raise InvalidRemoteAnswer(server, f"{received.event.event_id} is an event of another room")
    return received.event


def _check_signed_by(server: str, pdu: Mapping[str, Any], *, room_version: RoomVersion, signer: str) -> None:
    """``signer`` (not only the sender's server) signed the event: an invitee's server must sign its invite."""
    redacted = redact_pdu({k: v for k, v in pdu.items() if k != "unsigned"}, room_version)
    signatures = pdu.get("signatures")
    by_signer = signatures.get(signer) if isinstance(signatures, dict) else None
    valid_at = pdu.get("origin_server_ts", 0) if room_version.enforce_key_validity else 0
    for key_id in sorted(by_signer) if isinstance(by_signer, dict) else []:
        if not key_id.startswith("ed25519:"):
            continue
        key = get_keyring().get_verify_key(signer, key_id, valid_at if isinstance(valid_at, int) else 0)
        if key is None:
            continue
        try:
            verify_json_signature(redacted, server_name=signer, key_id=key_id, verify_key=key)
        except SignatureError as exc:
            raise InvalidRemoteAnswer(server, str(exc)) from None
        return
    raise InvalidRemoteAnswer(server, f"the event is not signed by {signer[:255]}")


def _auth_ordered(server: str, events: Mapping[str, Event], room_version: RoomVersion) -> list[Event]:
    """The events, each after the events it cites as auth events (a topological order)."""
    create_id = next((e.event_id for e in events.values() if e.state_tuple == CREATE_KEY), None)
    deps: dict[str, set[str]] = {}
    for event_id, event in events.items():
        cited = {a for a in event.auth_event_ids if a in events}
        if room_version.room_id_is_create_event_hash and event.type != "m.room.create" and create_id:
            cited.add(create_id)  # v12: the create event is implied
        deps[event_id] = cited
    ordered: list[Event] = []
    ready = sorted((e for e in deps if not deps[e]), key=lambda e: (events[e].depth, e))
    children: dict[str, list[str]] = {}
    for event_id, cited in deps.items():
        for a in cited:
            children.setdefault(a, []).append(event_id)
    remaining = {e: len(c) for e, c in deps.items()}
    while ready:
        event_id = ready.pop(0)
        ordered.append(events[event_id])
        for child in children.get(event_id, []):
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    if len(ordered) != len(events):
        raise InvalidRemoteAnswer(server, "the auth chain has a cycle")
    return ordered


def _check_create(server: str, create: Event | None, *, room_id: str, room_version: RoomVersion) -> Event:
    if create is None:
        raise InvalidRemoteAnswer(server, "the room state has no create event")
    if room_version.room_id_is_create_event_hash:
        if compute_room_id_v12(create.pdu) != room_id:
            raise InvalidRemoteAnswer(server, "the create event is not the one the room ID is the hash of")
    elif create.room_id != room_id:
        raise InvalidRemoteAnswer(server, "the create event is of another room")
    if create.content.get("room_version", "1") != room_version.identifier:
        raise InvalidRemoteAnswer(server, "the create event names another room version")
    return create


def _federation_failure(action: str, failures: Sequence[tuple[str, Exception]]) -> MatrixError:
    """The client's error: the last server's refusal if it refused, else what went wrong where."""
    if not failures:
        return MatrixError(
            404, "M_NOT_FOUND", f"No server to {action} through: give one in via / server_name"
        )
    server, last = failures[-1]
    if isinstance(last, FederationHttpError) and last.status in (400, 403, 404) and last.body:
        errcode = last.body.get("errcode")
        if isinstance(errcode, str) and errcode.startswith("M_"):
            message = last.body.get("error")
            detail = str(message)[:500] if isinstance(message, str) else last.reason
            return MatrixError(last.status, errcode, f"{server[:255]} refused to {action}: {detail}")
    reasons = "; ".join(str(exc)[:300] for _, exc in failures)
    return MatrixError(502, "M_UNKNOWN", f"Could not {action} through any server ({reasons})")


# --------------------------------------------------------------------------- join


def do_remote_join(*, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]) -> str:
    """Join ``room_id`` through the first of ``servers`` that gives a valid answer (in a worker
    thread; see the module docstring). Returns the room ID."""
    if not servers:
        raise _federation_failure("join", [])
    return run_detached(
        ("join", user_id, room_id),
        lambda: join_through_servers(user_id=user_id, room_id=room_id, servers=servers, content=content),
    )


def join_through_servers(
    *, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
) -> str:
    failures: list[tuple[str, Exception]] = []
    for server in servers:
        try:
            join_through(server, user_id=user_id, room_id=room_id, content=content)
            return room_id
        except (FederationError, InvalidRemoteAnswer) as exc:
            logger.info("joining %s through %s failed: %s", room_id, server[:255], exc)
            failures.append((server, exc))
    raise _federation_failure("join", failures)


def join_through(server: str, *, user_id: str, room_id: str, content: Mapping[str, Any]) -> None:
    """One make_join / send_join handshake with ``server``; raises if its answers are unusable."""
    room_version, join = _make_membership(server, "join", room_id=room_id, user_id=user_id, content=content)
    answer = get_federation_client().put_json(
        server,
        encode_path("/_matrix/federation/v2/send_join/{}/{}", room_id, join.event_id),
        join.pdu,
        max_bytes=SEND_JOIN_MAX_BYTES,
        timeout=SEND_JOIN_TIMEOUT_S,
    )
    if "join_authorised_via_users_server" in join.content:
        # Restricted join: the resident signed our event and hands it back (spec "send_join" v2 ``event``).
        join = _verify(
            server, answer.get("event"), room_version=room_version, room_id=room_id, expected=join.event_id
        )
        if join.content.get("membership") != "join" or join.sender != user_id:
            raise InvalidRemoteAnswer(server, "the signed join is not our join")
    state_pdus, chain_pdus = answer.get("state"), answer.get("auth_chain")
    if not isinstance(state_pdus, list) or not isinstance(chain_pdus, list):
        raise InvalidRemoteAnswer(server, "the send_join answer has no state and auth_chain lists")
    verified: dict[str, Event] = {}
    answered = [*chain_pdus, *state_pdus]
    # The answer's keys read together: one lookup, not one per event of a big room's state.
    lookup = get_keyring().lookup_for(signature_key_requests(answered))
    for pdu in answered:
        event = _verify(server, pdu, room_version=room_version, room_id=room_id, get_verify_key=lookup)
        verified[event.event_id] = event
    state: dict[StateKey, Event] = {}
    for pdu in state_pdus:
        event = verified[_event_id_of(pdu, room_version)]
        if not event.is_state():
            raise InvalidRemoteAnswer(server, f"{event.event_id} in the state is not a state event")
        state[event.state_tuple] = event
    create = _check_create(server, state.get(CREATE_KEY), room_id=room_id, room_version=room_version)
    if any(e.event_id == join.event_id for e in state.values()):
        # Spec "send_join" v2: ``state`` is the room's state *before* the join event.
        raise InvalidRemoteAnswer(server, "the state before our join contains our join")
    verified.pop(join.event_id, None)
    _persist_joined_room(
        server, room_version=room_version, creator=create.sender, events=verified, state=state, join=join
    )


def _event_id_of(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    return Event({k: v for k, v in pdu.items() if k != "unsigned"}, room_version).event_id


def _persist_joined_room(
    server: str,
    *,
    room_version: RoomVersion,
    creator: str,
    events: Mapping[str, Event],
    state: Mapping[StateKey, Event],
    join: Event,
) -> None:
    """Store the auth chain and state (outliers), make that state the room's, then persist our
    join on it: one transaction, so an answer that fails any check stores nothing."""
    room_id = join.room_id
    try:
        with transaction.atomic():
            room_store.lock_room_for_writing(room_id)
            room = room_store.get_room_for_update(room_id)
            if room is None:
                room = room_store.insert_room(
                    room_id=room_id,
                    room_version=room_version.identifier,
                    creator=creator,
                    created_ts=now_ms(),
                )
            elif room.room_version != room_version.identifier:
                raise InvalidRemoteAnswer(
                    server, f"the room is of version {room.room_version}, not {room_version.identifier}"
                )
            # The answer's outliers together, checked against each other in memory: one by one
            # (a savepoint, the room row, reads, the row and its edges each) a 1,000-member room
            # took seconds (issue 10's benchmark).
            nids = persist_received_outliers(room=room, events=_auth_ordered(server, events, room_version))
            new_state = {key: nids[e.event_id] for key, e in state.items()}
            _make_current_state(room, new_state, {nids[e.event_id]: e for e in state.values()})
            persisted = persist_received_event(join, state_before={k: e.event_id for k, e in state.items()})
            if persisted.rejected_reason is not None or persisted.soft_failed:
                raise InvalidRemoteAnswer(
                    server,
                    f"our join is not allowed by the room's state: {persisted.rejected_reason or 'soft-failed'}",
                )
    except (EventRejected, RoomNotFound) as exc:
        raise InvalidRemoteAnswer(server, str(exc)) from None


def _make_current_state(room: Room, new_state: Mapping[StateKey, int], events: Mapping[int, Event]) -> None:
    """The room's current state becomes ``new_state`` (the state before our join)."""
    group = state_store.create_state_group_snapshot(room, state=new_state)
    old = state_store.get_current_state_ids(room)
    changes: dict[StateKey, int | None] = {k: v for k, v in new_state.items() if old.get(k) != v}
    changes.update({k: None for k in old if k not in new_state})
    state_store.apply_current_state_delta(
        room,
        changes=changes,
        events={n: e for n, e in events.items() if e.type == "m.room.member"},
        stream_ordering=state_store.PENDING_STREAM_ORDERING,
        server_name=get_server_name(),
    )
    # Our join will be the room's only forward extremity; stale ones (a room we had left) go.
    room_store.set_room_head(
        room, forward_extremities=event_store.encode_forward_extremities([]), extremity_count=0,
        current_state_group=group,
    )  # fmt: skip


# --------------------------------------------------------------------------- knock and leave


def do_remote_knock(*, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]) -> str:
    """Knock through the first of ``servers`` that takes it; the knock is kept out of band with
    the stripped state the resident answered, for the user's ``/sync`` (``knock`` section)."""
    if not servers:
        raise _federation_failure("knock", [])

    def knock() -> str:
        failures: list[tuple[str, Exception]] = []
        for server in servers:
            try:
                _knock_through(server, user_id=user_id, room_id=room_id, content=content)
                return room_id
            except (FederationError, InvalidRemoteAnswer) as exc:
                failures.append((server, exc))
        raise _federation_failure("knock", failures)

    return run_detached(("knock", user_id, room_id), knock)


def _knock_through(server: str, *, user_id: str, room_id: str, content: Mapping[str, Any]) -> None:
    room_version, knock = _make_membership(server, "knock", room_id=room_id, user_id=user_id, content=content)
    answer = get_federation_client().put_json(
        server,
        encode_path("/_matrix/federation/v1/send_knock/{}/{}", room_id, knock.event_id),
        knock.pdu,
        timeout=MEMBERSHIP_TIMEOUT_S,
    )
    stripped = answer.get("knock_room_state")
    if not isinstance(stripped, list):
        raise InvalidRemoteAnswer(server, "the send_knock answer has no knock_room_state")
    kept = [e for e in stripped[:50] if isinstance(e, dict) and isinstance(e.get("type"), str)]
    pdu = {**knock.pdu, "unsigned": {"knock_room_state": kept}}
    store_out_of_band_membership(Event(pdu, room_version, knock.event_id), creator=_creator_in(kept, server))


def _creator_in(stripped: Sequence[Mapping[str, Any]], fallback: str) -> str:
    for item in stripped:
        if item.get("type") == "m.room.create" and isinstance(item.get("sender"), str):
            return str(item["sender"])
    return fallback


def do_remote_leave(*, room: Room, user_id: str, servers: Sequence[str], content: Mapping[str, Any]) -> None:
    """Leave a room we are not in (reject an invite, retract a knock) through ``servers``.

    An invite whose servers cannot be reached is still rejected here: the user must be
    able to get rid of it (the leave is kept out of band and sent nowhere).
    """
    room_version = get_room_version(room.room_version, require_supported=False)

    def leave() -> None:
        failures: list[tuple[str, Exception]] = []
        for server in servers:
            try:
                _leave_through(
                    server, room_version=room_version, user_id=user_id, room_id=room.room_id, content=content
                )
                return
            except (FederationError, InvalidRemoteAnswer) as exc:
                failures.append((server, exc))
        current = room_store.get_membership(room, user_id)
        if current is not None and current.membership == "invite":
            logger.info("rejecting the invite to %s locally: %s", room.room_id, failures)
            _store_local_rejection(
                room, room_version=room_version, user_id=user_id, invite_nid=current.event_id
            )
            return
        raise _federation_failure("leave", failures)

    run_detached(("leave", user_id, room.room_id), leave)


def _leave_through(
    server: str, *, room_version: RoomVersion, user_id: str, room_id: str, content: Mapping[str, Any]
) -> None:
    _, leave = _make_membership(
        server, "leave", room_id=room_id, user_id=user_id, content=content, known_version=room_version
    )
    get_federation_client().put_json(
        server,
        encode_path("/_matrix/federation/v2/send_leave/{}/{}", room_id, leave.event_id),
        leave.pdu,
        timeout=MEMBERSHIP_TIMEOUT_S,
    )
    store_out_of_band_membership(leave, creator=server)


def _store_local_rejection(room: Room, *, room_version: RoomVersion, user_id: str, invite_nid: int) -> None:
    invite = event_store.get_events_by_nids([invite_nid]).get(invite_nid)
    prev = [invite.event_id] if invite is not None else []
    leave = build_local_pdu(
        room_version=room_version, room_id=room.room_id, sender=user_id, event_type="m.room.member",
        content={"membership": "leave"}, state_key=user_id, prev_event_ids=prev,
        auth_events=[invite.event] if invite is not None else [], depth=(invite.depth + 1) if invite else 1,
    )  # fmt: skip
    store_out_of_band_membership(leave, creator=room.creator)


# --------------------------------------------------------------------------- invite


def do_invite_remote_user(*, room: Room, inviter: str, invitee: str, content: Mapping[str, Any]) -> None:
    """Invite another server's user into a room we are in: the invitee's server signs the
    invite first (``PUT /invite`` v2), then it is persisted as our event and goes out to the
    other servers in the room."""
    room_version = get_room_version(room.room_version, require_supported=False)
    server = _server_of(invitee)
    event_content = dict(content)
    auth_keys = auth_types_for_event(
        room_version, event_type="m.room.member", state_key=invitee, sender=inviter, content=event_content
    )
    entries = state_store.get_current_state_entries(room, [CREATE_KEY, *auth_keys])
    state = {k: e for k, (_, e) in entries.items()}
    extremities = event_store.get_forward_extremities(room)[:MAX_PREV_EVENTS]
    invite = build_local_pdu(
        room_version=room_version, room_id=room.room_id, sender=inviter, event_type="m.room.member",
        content=event_content, state_key=invitee, prev_event_ids=[e.event_id for e in extremities],
        auth_events=[state[k] for k in auth_keys if k in state], depth=max(e.depth for e in extremities) + 1,
    )  # fmt: skip
    try:
        check_event_auth(invite, state)
    except AuthError as exc:
        raise MatrixError(403, "M_FORBIDDEN", str(exc)) from None
    create = event_store.get_event_by_id(entries[CREATE_KEY][1].event_id) if CREATE_KEY in entries else None
    # The create event goes as a full PDU (v12 invitees check its hash against the room ID).
    room_state = [
        pdu_for_federation(create) if create is not None else None,
        *[e for e in stripped_room_state(room) if e["type"] != "m.room.create"],
    ]
    try:
        answer = get_federation_client().put_json(
            server,
            encode_path("/_matrix/federation/v2/invite/{}/{}", room.room_id, invite.event_id),
            {
                "room_version": room_version.identifier,
                "event": invite.pdu,
                "invite_room_state": [e for e in room_state if e is not None],
            },
            timeout=MEMBERSHIP_TIMEOUT_S,
        )
        signed = _verify(server, answer.get("event"), room_version=room_version, room_id=room.room_id,
                         expected=invite.event_id)  # fmt: skip
        if signed.content != invite.content or signed.state_key != invitee:
            raise InvalidRemoteAnswer(server, "the signed invite is not our invite")
        _check_signed_by(server, signed.pdu, room_version=room_version, signer=server)
    except (FederationError, InvalidRemoteAnswer) as exc:
        raise _federation_failure("invite", [(server, exc)]) from None
    try:
        persisted = persist_received_event(signed, local=True)
    except (EventRejected, RoomNotFound) as exc:
        raise MatrixError(403, "M_FORBIDDEN", str(exc)) from None
    if persisted.rejected_reason is not None or persisted.soft_failed:
        raise MatrixError(
            403, "M_FORBIDDEN", f"The invite is not allowed: {persisted.rejected_reason or 'soft-failed'}"
        )

"""What Politburo's DAG inspector shows (issues 13 and 14): a window of a room's recent events,
and everything about one event — its PDU, signatures with their verdict, its prev/auth
ancestry, the state before and after it, its children, and *why* it was rejected or
soft-failed (the auth rules rerun with :func:`~dagcore.protocol.auth_rules.explain.explain_event_auth`,
naming the rule and the state entry that decided).

Read-only; windows are bounded (:data:`MAX_WINDOW`) and page back by internal ID.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dagcore.actions.dag_check import RoomUnknown
from dagcore.models import Room
from dagcore.protocol.auth_rules import auth_types_for_event
from dagcore.protocol.auth_rules.explain import AuthVerdict, explain_event_auth
from dagcore.protocol.events import Event, StateKey
from dagcore.protocol.hashing import check_content_hash
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.signing import (
    SignatureError,
    decode_verify_key_base64,
    get_verify_key,
    key_id,
    verify_json_signature,
)
from dagcore.server_keys import get_old_verify_keys, get_server_name, get_signing_keys
from dagcore.store import dag_doctor as dag_store
from dagcore.store import events as event_store
from dagcore.store import rooms as room_store
from dagcore.store import server_keys as key_store
from dagcore.store import state as state_store
from dagcore.store.dag_doctor import DagNode
from dagcore.store.events import StoredEvent

DEFAULT_WINDOW = 40
MAX_WINDOW = 200
#: Ancestry drawn on an event page: this many generations of prev and auth events.
ANCESTRY_GENERATIONS = 2
MAX_ANCESTRY = 60

CREATE_KEY: StateKey = ("m.room.create", "")


class EventUnknown(Exception):
    """No such event stored here."""


@dataclass
class DagWindow:
    room: Room
    nodes: list[DagNode]  # newest first
    extremities: set[str]
    #: Pass as ``before`` for the next (older) page; ``None`` at the room's start.
    older: int | None


def get_dag_window(room_id: str, *, limit: int = DEFAULT_WINDOW, before: int | None = None) -> DagWindow:
    """The room's ``limit`` newest events (arrival order) before ``before``; raises :class:`RoomUnknown`."""
    room = room_store.get_room(room_id)
    if room is None:
        raise RoomUnknown(room_id)
    limit = max(1, min(limit, MAX_WINDOW))
    nodes = dag_store.get_recent_nodes(room, limit=limit + 1, before_nid=before)
    older = nodes[limit - 1].nid if len(nodes) > limit else None
    extremities = {e.event_id for e in event_store.get_forward_extremities(room)}
    return DagWindow(room, nodes[:limit], extremities, older)


def status_of(node: DagNode) -> str:
    if node.rejected_reason is not None:
        return "rejected"
    if node.soft_failed:
        return "soft_failed"
    if node.outlier:
        return "outlier"
    return "accepted"


@dataclass
class SignatureVerdict:
    server_name: str
    key_id: str
    #: ``valid``, ``invalid`` or ``unknown key`` (not in our key cache: not fetched from here).
    verdict: str
    detail: str = ""


@dataclass
class AuthStep:
    """One receipt check (spec server-server API "Checks performed on receipt of a PDU")."""

    name: str
    verdict: AuthVerdict | None
    note: str = ""
    consulted: list[tuple[str, str, str | None]] = field(default_factory=list)


@dataclass
class StateEntry:
    type: str
    state_key: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass
class EventReport:
    stored: StoredEvent
    node: DagNode
    room_id: str
    status: str
    is_extremity: bool
    content_hash_ok: bool
    signatures: list[SignatureVerdict]
    ancestry: list[DagNode]
    children: list[DagNode]
    state: list[StateEntry]
    auth_steps: list[AuthStep]

    @property
    def state_changes(self) -> list[StateEntry]:
        return [s for s in self.state if s.changed]


def get_event_report(event_id: str) -> EventReport:
    """Everything the event page shows; raises :class:`EventUnknown`."""
    stored = event_store.get_event_by_id(event_id)
    if stored is None:
        raise EventUnknown(event_id)
    node = dag_store.get_nodes_by_ids([event_id])[event_id]
    room = room_store.get_room(stored.event.room_id)
    is_extremity = room is not None and any(
        e.event_id == event_id for e in event_store.get_forward_extremities(room)
    )
    return EventReport(
        stored=stored,
        node=node,
        room_id=stored.event.room_id,
        status=status_of(node),
        is_extremity=is_extremity,
        content_hash_ok=check_content_hash(stored.event.pdu),
        signatures=_signatures(stored.event),
        ancestry=_ancestry(node),
        children=dag_store.get_child_nodes(event_id),
        state=_state(stored),
        auth_steps=_auth_steps(stored, room),
    )


def _signatures(event: Event) -> list[SignatureVerdict]:
    """Each signature of the PDU against the key we hold for it (ours, or our cache of remote keys)."""
    redacted = redact_pdu(event.pdu, event.room_version)
    signatures = event.pdu.get("signatures")
    pairs = [
        (str(server), str(kid))
        for server, entry in (signatures.items() if isinstance(signatures, dict) else [])
        if isinstance(entry, dict)
        for kid in entry
    ]
    ours = get_server_name()
    own_keys = {key_id(k): get_verify_key(k) for k in get_signing_keys()}
    own_keys.update({kid: key for kid, (key, _) in get_old_verify_keys().items()})
    cached = key_store.get_server_keys(keys=[p for p in pairs if p[0] != ours])
    out: list[SignatureVerdict] = []
    for server, kid in sorted(pairs):
        if server == ours:
            verify_key = own_keys.get(kid)
        else:
            found = cached.get((server, kid))
            verify_key = decode_verify_key_base64(kid, found.verify_key) if found is not None else None
        if verify_key is None:
            out.append(SignatureVerdict(server, kid, "unknown key", "not in this server's key cache"))
            continue
        try:
            verify_json_signature(redacted, server_name=server, key_id=kid, verify_key=verify_key)
            out.append(SignatureVerdict(server, kid, "valid"))
        except SignatureError as exc:
            out.append(SignatureVerdict(server, kid, "invalid", str(exc)))
    return out


def _ancestry(node: DagNode) -> list[DagNode]:
    """The event and its prev and auth events, :data:`ANCESTRY_GENERATIONS` deep (bounded)."""
    found: dict[str, DagNode] = {node.event_id: node}
    frontier = [node]
    for _ in range(ANCESTRY_GENERATIONS):
        wanted = [i for n in frontier for i in (*n.prev_ids, *n.auth_ids) if i not in found]
        if not wanted or len(found) >= MAX_ANCESTRY:
            break
        more = dag_store.get_nodes_by_ids(wanted[: MAX_ANCESTRY - len(found)])
        found.update(more)
        frontier = list(more.values())
    return list(found.values())


def _state(stored: StoredEvent) -> list[StateEntry]:
    before = (
        state_store.get_state_ids(stored.state_group_before) if stored.state_group_before is not None else {}
    )
    after = state_store.get_state_ids(stored.state_group) if stored.state_group is not None else {}
    ids = event_store.get_event_ids_for_nids({*before.values(), *after.values()})
    return [
        StateEntry(
            t,
            s,
            ids.get(before[(t, s)]) if (t, s) in before else None,
            ids.get(after[(t, s)]) if (t, s) in after else None,
        )
        for t, s in sorted(set(before) | set(after))
    ]


def _named(verdict: AuthVerdict) -> list[tuple[str, str, str | None]]:
    return [(k[0], k[1], eid) for k, eid in verdict.consulted]


def _auth_steps(stored: StoredEvent, room: Room | None) -> list[AuthStep]:
    """The receipt checks rerun now, each explained: against the event's auth events (step 4,
    reject), the state before it (step 5, reject) and the room's current state (step 6,
    soft fail: today's current state, which may have moved since the event arrived)."""
    event = stored.event
    version = event.room_version
    steps: list[AuthStep] = []
    auth_ids = list(event.auth_event_ids)
    create_id = (
        event.create_event_id_for_v12()
        if version.room_id_is_create_event_hash and event.type != "m.room.create"
        else None
    )
    held = event_store.get_events_by_ids([*auth_ids, *([create_id] if create_id else [])])
    missing = [a for a in auth_ids if a not in held]
    if missing:
        steps.append(
            AuthStep("4. against its auth events", None, f"auth events not held: {', '.join(missing)}")
        )
    else:
        # Rejected auth events keep their reason: the auth_events rules refuse them.
        listed = [_with_rejection(held[a]) for a in auth_ids]
        create = _with_rejection(held[create_id]) if create_id and create_id in held else None
        state = {e.state_tuple: e for e in listed if e.is_state()}
        if create is not None:
            state[CREATE_KEY] = create
        verdict = explain_event_auth(event, state, auth_events=listed, create_event=create)
        steps.append(AuthStep("4. against its auth events", verdict, consulted=_named(verdict)))
    if stored.outlier:
        steps.append(
            AuthStep("5. against the state before it", None, "an outlier has no state before it here")
        )
        return steps
    keys = auth_types_for_event(version, event_type=event.type, state_key=event.state_key, sender=event.sender,
                                content=event.content)  # fmt: skip
    if stored.state_group_before is not None:
        verdict = explain_event_auth(event, _state_events(stored.state_group_before, [CREATE_KEY, *keys]))
        steps.append(AuthStep("5. against the state before it", verdict, consulted=_named(verdict)))
    else:
        steps.append(AuthStep("5. against the state before it", None, "no state before it is stored"))
    if room is not None and room.current_state_group is not None:
        verdict = explain_event_auth(event, _state_events(room.current_state_group, [CREATE_KEY, *keys]))
        steps.append(AuthStep(
            "6. against the room's current state (today's; soft fail)", verdict, consulted=_named(verdict),
            note="current state has moved since the event arrived" if stored.soft_failed and verdict.allowed else "",
        ))  # fmt: skip
    return steps


def _with_rejection(stored: StoredEvent) -> Event:
    event = stored.effective_event
    if stored.rejected_reason is None:
        return event
    return Event(event.pdu, event.room_version, event.event_id, rejected_reason=stored.rejected_reason)


def _state_events(group: int, keys: list[StateKey]) -> dict[StateKey, Event]:
    nids = state_store.get_state_ids(group, list(dict.fromkeys(keys)))
    events = event_store.get_events_by_nids(nids.values())
    return {k: events[n].effective_event for k, n in nids.items() if n in events}


def pdu_json(stored: StoredEvent) -> dict[str, Any]:
    """The PDU as stored, with its event ID (not part of a v3+ PDU) for reading."""
    return {"event_id": stored.event_id, **stored.event.pdu}

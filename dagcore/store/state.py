"""State groups (room state at an event) and the room's current state.

A state group is immutable once written, so its chain and full state are cached
in-process (``dagcore.caching``) — safe with any number of processes. Groups are stored
as deltas over their predecessor; a chain never grows past ``MAX_STATE_CHAIN``
groups before a full snapshot is written, so reading any state is one query
over a bounded set of groups.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from dagcore.caching import BoundedCache
from dagcore.models import CurrentStateEvent, Room, RoomMembership, RoomServer, StateGroup, StateGroupEntry
from dagcore.protocol.events import Event, StateKey
from dagcore.protocol.redaction import redact_pdu
from dagcore.protocol.room_versions import get_room_version
from dagcore.store.events import as_redacted

MAX_STATE_CHAIN = 100

#: Membership rows written before the event's stream position is known (it is
#: allocated last in the transaction); settled by ``settle_pending_memberships``.
PENDING_STREAM_ORDERING = -1

#: Entries with this nid mark a key removed from the state (never happens in
#: normal resolution, but keeps deltas able to express any change).
REMOVED = 0


#: A state group never changes once written (DESIGN.md §4), so what is read of one is
#: cached by its ID: safe with any number of processes (see ``dagcore.caching``).
_chain_cache: BoundedCache[int, tuple[int, ...]] = BoundedCache("state.group_chains", maxsize=10_000)
_full_state_cache: BoundedCache[int, dict[StateKey, int]] = BoundedCache("state.full_state", maxsize=64)


def _keys_condition(keys: Iterable[StateKey]) -> Q:
    cond = Q()
    for etype, skey in keys:
        cond |= Q(type=etype, state_key=skey)
    return cond


def get_state_group_chain(group_id: int) -> tuple[int, ...]:
    cached = _chain_cache.get(group_id)
    if cached is None:
        chain = StateGroup.objects.filter(id=group_id).values_list("chain", flat=True).first()
        if chain is None:
            raise LookupError(f"unknown state group {group_id}")
        cached = tuple(json.loads(chain))
        _chain_cache.put(group_id, cached)
    return cached


def get_state_group_chains(groups: Iterable[int]) -> dict[int, tuple[int, ...]]:
    """Chains of many state groups: cached ones free, the others in one query (unknown
    groups are left out)."""
    out: dict[int, tuple[int, ...]] = {}
    missing: list[int] = []
    for g in set(groups):
        cached = _chain_cache.get(g)
        if cached is None:
            missing.append(g)
        else:
            out[g] = cached
    if missing:
        for gid, chain in StateGroup.objects.filter(id__in=missing).values_list("id", "chain"):
            value = tuple(json.loads(chain))
            _chain_cache.put(gid, value)
            out[gid] = value
    return out


def get_state_ids(group_id: int, keys: Iterable[StateKey] | None = None) -> dict[StateKey, int]:
    """``(type, state_key) -> event nid`` of a state group; all of it, or only ``keys``."""
    if keys is None:
        cached = _full_state_cache.get(group_id)
        if cached is not None:
            return dict(cached)
    chain = get_state_group_chain(group_id)
    position = {g: i for i, g in enumerate(chain)}
    qs = StateGroupEntry.objects.filter(group_id__in=chain)
    if keys is not None:
        wanted = list(keys)
        if not wanted:
            return {}
        qs = qs.filter(_keys_condition(wanted))
    best: dict[StateKey, tuple[int, int]] = {}
    for gid, etype, skey, nid in qs.values_list("group_id", "type", "state_key", "event_nid"):
        pos = position[gid]
        key = (etype, skey)
        prev = best.get(key)
        if prev is None or prev[0] < pos:
            best[key] = (pos, nid)
    result = {k: nid for k, (_, nid) in best.items() if nid != REMOVED}
    if keys is None:
        _full_state_cache.put(group_id, dict(result))
    return result


def get_full_state_ids_of_groups(groups: Iterable[int]) -> dict[int, dict[StateKey, int]]:
    """The whole state of many state groups: cached ones free, the rest in two queries."""
    out: dict[int, dict[StateKey, int]] = {}
    missing: list[int] = []
    for g in set(groups):
        cached = _full_state_cache.get(g)
        if cached is not None:
            out[g] = dict(cached)
        else:
            missing.append(g)
    if not missing:
        return out
    chains = get_state_group_chains(missing)
    union = {gid for chain in chains.values() for gid in chain}
    entries: dict[int, list[tuple[str, str, int]]] = {}
    for gid, etype, skey, nid in StateGroupEntry.objects.filter(group_id__in=list(union)).values_list(
        "group_id", "type", "state_key", "event_nid"
    ):
        entries.setdefault(gid, []).append((etype, skey, nid))
    for g in missing:
        state: dict[StateKey, int] = {}
        for gid in chains.get(g, ()):
            for etype, skey, nid in entries.get(gid, ()):
                state[(etype, skey)] = nid
        result = {k: v for k, v in state.items() if v != REMOVED}
        _full_state_cache.put(g, dict(result))
        out[g] = result
    return out


def get_state_ids_of_type(group_id: int, event_type: str) -> dict[str, int]:
    """``state_key -> nid`` for one event type (e.g. every m.room.member)."""
    chain = get_state_group_chain(group_id)
    position = {g: i for i, g in enumerate(chain)}
    best: dict[str, tuple[int, int]] = {}
    for gid, skey, nid in StateGroupEntry.objects.filter(group_id__in=chain, type=event_type).values_list(
        "group_id", "state_key", "event_nid"
    ):
        pos = position[gid]
        prev = best.get(skey)
        if prev is None or prev[0] < pos:
            best[skey] = (pos, nid)
    return {k: nid for k, (_, nid) in best.items() if nid != REMOVED}


def create_state_group(room: Room, *, prev_group: int | None, delta: Mapping[StateKey, int]) -> int:
    """Store the state ``prev_group + delta`` and return its group ID."""
    if prev_group is not None:
        prev_chain = get_state_group_chain(prev_group)
        if len(prev_chain) < MAX_STATE_CHAIN:
            group = StateGroup.objects.create(room=room, prev_group=prev_group, chain="[]", is_snapshot=False)
            chain = [*prev_chain, group.id]
            group.chain = json.dumps(chain)
            group.save(update_fields=["chain"])
            StateGroupEntry.objects.bulk_create(
                [
                    StateGroupEntry(group_id=group.id, type=t, state_key=s, event_nid=n)
                    for (t, s), n in delta.items()
                ]
            )
            _chain_cache.put(group.id, tuple(chain))
            return int(group.id)
        full = get_state_ids(prev_group)
        full.update(delta)
        return create_state_group_snapshot(
            room, state={k: v for k, v in full.items() if v != REMOVED}, prev_group=prev_group
        )
    return create_state_group_snapshot(room, state=dict(delta), prev_group=None)


def create_state_group_snapshot(
    room: Room, *, state: Mapping[StateKey, int], prev_group: int | None = None
) -> int:
    group = StateGroup.objects.create(room=room, prev_group=prev_group, chain="[]", is_snapshot=True)
    group.chain = json.dumps([group.id])
    group.save(update_fields=["chain"])
    StateGroupEntry.objects.bulk_create(
        [StateGroupEntry(group_id=group.id, type=t, state_key=s, event_nid=n) for (t, s), n in state.items()],
        batch_size=2000,
    )
    _chain_cache.put(group.id, (group.id,))
    _full_state_cache.put(group.id, dict(state))
    return int(group.id)


def create_state_group_for_state(room: Room, *, state: Mapping[StateKey, int], near_group: int | None) -> int:
    """Store an arbitrary state (e.g. a resolution result), as a delta over ``near_group`` if close."""
    if near_group is None:
        return create_state_group_snapshot(room, state=state)
    base = get_state_ids(near_group)
    delta: dict[StateKey, int] = {k: v for k, v in state.items() if base.get(k) != v}
    for k in base:
        if k not in state:
            delta[k] = REMOVED
    if len(delta) > 1000:
        return create_state_group_snapshot(room, state=state, prev_group=near_group)
    return create_state_group(room, prev_group=near_group, delta=delta)


# --------------------------------------------------------------------------- current state


def _current_state_rows(room: Room, keys: Iterable[StateKey] | None) -> QuerySet[CurrentStateEvent] | None:
    """The current-state rows of ``room`` (only ``keys``, if given); None when ``keys`` is empty."""
    qs = CurrentStateEvent.objects.filter(room=room)
    if keys is None:
        return qs
    wanted = list(keys)
    return qs.filter(_keys_condition(wanted)) if wanted else None


def get_current_state_ids(room: Room, keys: Iterable[StateKey] | None = None) -> dict[StateKey, int]:
    qs = _current_state_rows(room, keys)
    if qs is None:
        return {}
    return {(t, s): nid for t, s, nid in qs.values_list("type", "state_key", "event_id")}


def get_current_state_events(room: Room, keys: Iterable[StateKey] | None = None) -> dict[StateKey, Event]:
    """Current state as protocol events: one query (join with the events table)."""
    qs = _current_state_rows(room, keys)
    if qs is None:
        return {}
    version = get_room_version(room.room_version, require_supported=False)
    out: dict[StateKey, Event] = {}
    rows = qs.values_list("type", "state_key", "event__event_id", "event__json", "event__redacted_by")
    for etype, skey, event_id, raw, redacted_by in rows:
        event = Event(json.loads(raw), version, event_id)
        # Redacted state counts in its redacted form (auth rules, and what clients are shown).
        out[(etype, skey)] = as_redacted(event) if redacted_by is not None else event
    return out


def get_current_state_pdus(
    room_nids: Iterable[int], *, types: Iterable[str], state_key: str | None = None
) -> dict[int, list[dict[str, Any]]]:
    """Per room, its current state events of ``types`` (only ``state_key`` if given) as PDUs,
    redacted ones in their redacted form: one query for any number of rooms."""
    nids = list(set(room_nids))
    out: dict[int, list[dict[str, Any]]] = {n: [] for n in nids}
    if not nids:
        return out
    rows = CurrentStateEvent.objects.filter(room_id__in=nids, type__in=list(types))
    if state_key is not None:
        rows = rows.filter(state_key=state_key)
    for room_nid, raw, redacted_by, version in rows.values_list(
        "room_id", "event__json", "event__redacted_by", "room__room_version"
    ):
        pdu = json.loads(raw)
        if redacted_by is not None:
            pdu = redact_pdu(pdu, get_room_version(version, require_supported=False))
        out[room_nid].append(pdu)
    return out


@dataclass(frozen=True)
class _CurrentEntries:
    """A room's cached auth entries, all of one state group (its current one when cached)."""

    group: int
    #: keys asked -> ``{key: (nid, event)}``
    answers: dict[tuple[StateKey, ...], dict[StateKey, tuple[int, Event]]]
    #: ``(nid, redacted)`` -> the event those answers hold, parsed once for all of them (and
    #: for the next group's, which mostly holds the same create, power levels, join rules).
    events: dict[tuple[int, bool], Event]


#: Room nid -> the auth events of its next local events, for its current state group: a
#: state group is immutable and the room's current one moves with every state change, so
#: the group the caller read names the answer (as ``sync.room_state``), and a room's older
#: groups are never asked for again: only the newest group's answers are kept. A redaction
#: changes no state group: from room v11 (``updated_redaction_rules``) a redaction keeps
#: every key the auth rules read, so the cached form is the redacted form; before v11 it
#: drops some (``invite`` of power levels), and such rooms are not cached. Callers pass the
#: ``current_state_group`` they read under the room's write lock and must not modify the
#: events they get. Keyed by (room, group, keys) and parsed per entry, 1,024 entries held
#: 6.5 MiB of event JSON after the bench's join storm (tracemalloc), mostly copies of the
#: same few events for groups no one would ask for again.
_current_entries: BoundedCache[int, _CurrentEntries] = BoundedCache(
    "state.current_auth_entries", maxsize=1024
)
#: Key sets kept per room and group (each sender asks for its own member event).
MAX_KEY_SETS_PER_ROOM = 256


def get_current_state_entries(room: Room, keys: Iterable[StateKey]) -> dict[StateKey, tuple[int, Event]]:
    """``key -> (nid, event)`` for some keys of the current state: one raw query (hot path),
    none when the room's current state group was asked for the same keys before."""
    wanted = list(keys)
    if not wanted:
        return {}
    group = room.current_state_group
    if (
        group is None
        or not get_room_version(room.room_version, require_supported=False).updated_redaction_rules
    ):
        return _read_current_state_entries(room, wanted, {}, {})
    asked = tuple(wanted)
    record = _current_entries.get(room.pk)
    if record is not None and record.group == group:
        cached = record.answers.get(asked)
        if cached is not None:
            return dict(cached)
    held: dict[tuple[int, bool], Event] = {}
    out = _read_current_state_entries(room, wanted, record.events if record is not None else {}, held)
    if record is not None and record.group == group:
        if len(record.answers) >= MAX_KEY_SETS_PER_ROOM:
            return out
        # A new record, never the cached one changed: another thread may be reading it.
        record = _CurrentEntries(group, {**record.answers, asked: dict(out)}, {**record.events, **held})
    else:
        record = _CurrentEntries(group, {asked: dict(out)}, held)
    _current_entries.put(room.pk, record)
    return out


def _read_current_state_entries(
    room: Room,
    wanted: list[StateKey],
    parsed: Mapping[tuple[int, bool], Event],
    held: dict[tuple[int, bool], Event],
) -> dict[StateKey, tuple[int, Event]]:
    """Read from the database. ``parsed``: events already parsed, by ``(nid, redacted)``;
    ``held`` gets the events of the answer the same way."""
    cond = " OR ".join(["(c.type = %s AND c.state_key = %s)"] * len(wanted))
    params: list[Any] = [room.pk]
    for etype, skey in wanted:
        params += [etype, skey]
    version = get_room_version(room.room_version, require_supported=False)
    out: dict[StateKey, tuple[int, Event]] = {}
    with connection.cursor() as cur:
        # Only placeholders are interpolated into the SQL text.
        sql = (
            "SELECT c.type, c.state_key, e.id, e.event_id, e.json, e.redacted_by FROM current_state_events c "
            "JOIN events e ON e.id = c.event_id WHERE c.room_id = %s AND (" + cond + ")"
        )
        cur.execute(sql, params)
        for etype, skey, nid, event_id, raw, redacted_by in cur.fetchall():
            redacted = redacted_by is not None
            event = parsed.get((nid, redacted))
            if event is None:
                event = Event(json.loads(raw), version, event_id)
                # Auth sees redacted state in its redacted form (StoredEvent.effective_event).
                if redacted:
                    event = as_redacted(event)
            held[(nid, redacted)] = event
            out[(etype, skey)] = (nid, event)
    return out


def apply_current_state_delta(
    room: Room,
    *,
    changes: Mapping[StateKey, int | None],
    events: Mapping[int, Event],
    stream_ordering: int,
    server_name: str,
) -> None:
    """Write changed keys of the current state; keep memberships and room servers in step.

    ``changes`` maps keys to the new event nid (None: removed); ``events`` holds
    the protocol events for the new member-event nids.
    """
    if not changes:
        return
    # Changed keys are deleted (removed ones for good), then the new rows inserted.
    CurrentStateEvent.objects.filter(room=room).filter(_keys_condition(changes)).delete()
    updated = {k: v for k, v in changes.items() if v is not None}
    if updated:
        CurrentStateEvent.objects.bulk_create(
            [
                CurrentStateEvent(room=room, type=t, state_key=s, event_id=nid)
                for (t, s), nid in updated.items()
            ]
        )
    member_changes = {skey: nid for (etype, skey), nid in changes.items() if etype == "m.room.member"}
    if member_changes:
        _apply_membership_changes(room, member_changes, events, stream_ordering, server_name)


def _apply_membership_changes(
    room: Room,
    changes: Mapping[str, int | None],
    events: Mapping[int, Event],
    stream_ordering: int,
    server_name: str,
) -> None:
    existing = {
        m.user_id: m
        for m in RoomMembership.objects.filter(room=room, user_id__in=list(changes)).only(
            "id", "user_id", "membership"
        )
    }
    server_delta: dict[str, int] = {}
    to_create: list[RoomMembership] = []
    for user_id, nid in changes.items():
        old = existing.get(user_id)
        old_joined = old is not None and old.membership == "join"
        server = user_id.split(":", 1)[1] if ":" in user_id else ""
        if nid is None:
            if old is not None:
                old.delete()
            new_joined = False
        else:
            ev = events[nid]
            membership = ev.membership or "leave"
            displayname = ev.content.get("displayname")
            avatar = ev.content.get("avatar_url")
            fields: dict[str, Any] = {
                "membership": membership,
                "event_id": nid,
                "stream_ordering": stream_ordering,
                "displayname": displayname[:512] if isinstance(displayname, str) else None,
                "avatar_url": avatar[:512] if isinstance(avatar, str) else None,
            }
            if old is not None:
                RoomMembership.objects.filter(id=old.id).update(**fields)
            else:
                to_create.append(
                    RoomMembership(room=room, user_id=user_id, is_local=server == server_name, **fields)
                )
            new_joined = membership == "join"
        if old_joined != new_joined:
            server_delta[server] = server_delta.get(server, 0) + (1 if new_joined else -1)
    if to_create:
        RoomMembership.objects.bulk_create(to_create)
    for server, delta in server_delta.items():
        row, _ = RoomServer.objects.get_or_create(room=room, server_name=server)
        row.joined_count = max(0, row.joined_count + delta)
        row.save(update_fields=["joined_count"])


def settle_pending_memberships(room: Room, stream_ordering: int) -> None:
    RoomMembership.objects.filter(room=room, stream_ordering=PENDING_STREAM_ORDERING).update(
        stream_ordering=stream_ordering
    )

"""Building a ``/sync`` response (spec: client-server API "Syncing", "Filtering",
"Lazy-loading room members" and the sync extensions of the modules).

A sync token holds a position for each stream (``tribune.tokens.SyncToken``).
An incremental sync asks each stream "what changed after your position, up to
mine" through indexes over that stream (events by stream ordering, receipts,
typing, account data, presence, to-device and device-list rows by their stream
IDs), and touches only rooms where something changed: its cost does not grow
with the number of quiet rooms the user is in. An initial sync of N rooms costs
a bounded number of queries in total (per-room subqueries are merged into one
``UNION ALL`` statement by ``dagcore.store.sync``).

Everything here is synchronous database work; ``tribune.views.sync`` runs it
in a thread and does the waiting (long-poll) on the event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

from django.db.models import Q

from dagcore.actions import push_rules as push_actions
from dagcore.actions.filters import RoomEventFilter, SyncFilter
from dagcore.actions.presence import presence_content, presence_enabled
from dagcore.actions.room_access import RoomReader, filter_visible_events, get_client_event_extras
from dagcore.actions.to_device import acknowledge_device_inbox, get_device_inbox, to_device_event
from dagcore.clock import now_ms
from dagcore.protocol.events import StateKey
from dagcore.store import account_data as account_data_store
from dagcore.store import device_lists as device_list_store
from dagcore.store import events as event_store
from dagcore.store import presence as presence_store
from dagcore.store import receipts as receipt_store
from dagcore.store import rooms as room_store
from dagcore.store import sync as sync_store
from dagcore.store import timeline
from dagcore.store import typing as typing_store
from dagcore.store.events import StoredEvent
from dagcore.store.streams import STREAMS
from dagcore.store.sync import MembershipInfo
from tribune.serialize import serialize_stored_events, strip_state
from tribune.tokens import RoomToken, SyncToken

IGNORED_USERS_TYPE = "m.ignored_user_list"
#: State shown for an invite or a knock (spec: "Stripped state", recommended events).
STRIPPED_STATE_KEYS: tuple[StateKey, ...] = (
    ("m.room.create", ""),
    ("m.room.name", ""),
    ("m.room.avatar", ""),
    ("m.room.topic", ""),
    ("m.room.join_rules", ""),
    ("m.room.canonical_alias", ""),
    ("m.room.encryption", ""),
)
MEMBER = "m.room.member"
NAMING_FIELDS: tuple[tuple[StateKey, str], ...] = (
    (("m.room.name", ""), "name"),
    (("m.room.canonical_alias", ""), "alias"),
)
NAMING_KEYS: tuple[StateKey, ...] = tuple(k for k, _ in NAMING_FIELDS)


@dataclass(frozen=True)
class SyncParams:
    user_id: str
    device_id: str | None
    #: Transaction-ID scope of the requesting device (``unsigned.transaction_id``).
    device_key: str
    since: SyncToken | None
    full_state: bool
    filter: SyncFilter


@dataclass
class SyncResult:
    body: dict[str, Any]
    has_news: bool
    next_batch: SyncToken
    #: Rooms whose changes concern this sync (the long-poll waits on them).
    room_ids: frozenset[str]


# --------------------------------------------------------------------------- lazy-loading memory


class _SentMembers:
    """Which member events this device was sent, per room (spec: lazy-loading avoids
    "redundant" members). Per process: a device served by another process just
    receives some members twice, which the spec allows."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self.data: OrderedDict[tuple[str, str, int], dict[str, int]] = OrderedDict()
        self.lock = Lock()

    def get(self, key: tuple[str, str, int]) -> dict[str, int]:
        with self.lock:
            value = self.data.get(key)
            if value is None:
                return {}
            self.data.move_to_end(key)
            return dict(value)

    def put(self, key: tuple[str, str, int], value: dict[str, int], *, replace: bool) -> None:
        with self.lock:
            current = {} if replace else dict(self.data.get(key, {}))
            current.update(value)
            self.data[key] = current
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)


_sent_members = _SentMembers()


class _Acknowledged:
    """Per device, the to-device position whose messages this process already deleted."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self.data: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.lock = Lock()

    def get(self, key: tuple[str, str]) -> int | None:
        with self.lock:
            return self.data.get(key)

    def put(self, key: tuple[str, str], value: int) -> None:
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)


_acknowledged = _Acknowledged()


# --------------------------------------------------------------------------- helpers


def _clamp(since: SyncToken, current: SyncToken) -> SyncToken:
    """A token from "the future" (e.g. a restored database) counts as now."""
    return SyncToken(**{s: min(getattr(since, s), getattr(current, s)) for s in STREAMS})


def _pick_fields(event: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Spec ``event_fields``: keep only these dot-separated paths (``\\.`` escapes a dot)."""
    from dagcore.protocol.push_rules import split_path

    out: dict[str, Any] = {}
    for path_text in fields:
        path = split_path(path_text)
        if not path:
            continue
        src: Any = event
        for part in path:
            if not isinstance(src, dict) or part not in src:
                break
            src = src[part]
        else:
            dst = out
            for part in path[:-1]:
                dst = dst.setdefault(part, {})
                if not isinstance(dst, dict):
                    break
            else:
                dst[path[-1]] = src
    return out


def _event_batch(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"events": events}


@dataclass
class _Room:
    """What the builder gathers for one room of the join or leave section."""

    m: MembershipInfo
    section: str  # "join" or "leave"
    full_state: bool = False
    timeline_range: tuple[int | None, int] | None = None
    events: list[StoredEvent] = field(default_factory=list)
    limited: bool = False
    state_ids: dict[StateKey, int] = field(default_factory=dict)
    ephemeral: list[dict[str, Any]] = field(default_factory=list)
    account_data: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None


# --------------------------------------------------------------------------- the builder


class SyncBuilder:
    def __init__(self, params: SyncParams) -> None:
        self.p = params
        self.user_id = params.user_id
        self.f = params.filter
        self.now = now_ms()
        # One round trip for what every sync reads first (stream positions, memberships,
        # ignored users and push rules' version, the device's key counts).
        self.start = sync_store.get_sync_start(
            user_id=self.user_id,
            device_id=params.device_id,
            account_data_types=(IGNORED_USERS_TYPE, account_data_store.PUSH_RULES_TYPE),
        )
        self.current = SyncToken.from_positions(self.start.positions)
        self.since = _clamp(params.since, self.current) if params.since is not None else None
        self.initial = self.since is None

    # -- small predicates ----------------------------------------------------------------

    def _moved(self, stream: str) -> bool:
        return self.since is None or getattr(self.since, stream) < getattr(self.current, stream)

    def _serialize(self, events: Sequence[StoredEvent], *, timeline_events: bool) -> list[dict[str, Any]]:
        if not events:
            return []
        if self.f.event_format == "federation":
            out = [dict(e.event.pdu) for e in events]
        else:
            extras = get_client_event_extras(
                events,
                user_id=self.user_id,
                device_key=self.p.device_key,
                with_prev_content=timeline_events,
                with_relations=timeline_events,
                relations_as_of=self.current.events,
            )
            out = serialize_stored_events(events, extras, include_room_id=False, now=self.now)
        return self._fields(out)

    def _fields(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.f.event_fields is None:
            return events
        return [_pick_fields(e, self.f.event_fields) for e in events]

    # -- entry point -----------------------------------------------------------------------

    def build(self) -> SyncResult:
        since = self.since
        memberships = [
            m
            for m in self.start.memberships
            # A membership newer than our snapshot of the streams shows in the next sync.
            if m.stream_ordering <= self.current.events and self.f.room.allows_room(m.room_id)
        ]
        watch = frozenset(m.room_id for m in memberships if m.membership in ("join", "invite", "knock"))
        body: dict[str, Any] = {}
        next_batch = self.current

        nothing_moved = since is not None and since == self.current
        if nothing_moved and not self.p.full_state:
            body["next_batch"] = str(next_batch)
            if self.p.device_id is not None:
                self._acknowledge_to_device()
            self._add_e2e_counts(body)
            return SyncResult(body, False, next_batch, watch)

        self.ignored, self.rules_version, self.rules_key = self._user_settings()
        self.ruleset: dict[str, list[dict[str, Any]]] | None = None
        self.news: dict[int, int] = {}
        #: Per room, ``(after, events)``: every timeline event of the room in ``(after, now]``,
        #: before any per-user filtering — for rooms whose timeline query was unfiltered and
        #: not cut, so the unread counts and device lists use it instead of reading them again.
        self.complete: dict[int, tuple[int, list[StoredEvent]]] = {}
        #: Timelines read with the news of an incremental sync, and their ranges.
        self.prefetched: dict[int, list[StoredEvent]] = {}
        self.prefetch_ranges: dict[int, tuple[int, int]] = {}

        rooms_body = self._rooms(memberships)
        if rooms_body:
            body["rooms"] = rooms_body
        presence = self._presence(memberships)
        if presence:
            body["presence"] = _event_batch(presence)
        account_data = self._global_account_data()
        if account_data:
            body["account_data"] = _event_batch(account_data)
        to_device, to_device_pos = self._to_device()
        if to_device:
            body["to_device"] = _event_batch(to_device)
        next_batch = self.current.copy_with(to_device=to_device_pos)
        device_lists = self._device_lists(memberships)
        if device_lists:
            body["device_lists"] = device_lists
        has_news = bool(rooms_body or presence or account_data or to_device or device_lists)
        body["next_batch"] = str(next_batch)
        self._add_e2e_counts(body)
        return SyncResult(body, has_news, next_batch, watch)

    def _add_e2e_counts(self, body: dict[str, Any]) -> None:
        if self.start.e2e_counts is None:
            return
        counts, fallback = self.start.e2e_counts
        body["device_one_time_keys_count"] = counts
        body["device_unused_fallback_key_types"] = fallback

    def _user_settings(self) -> tuple[frozenset[str], int, tuple[int, int]]:
        """The ignored users (spec "Ignoring Users": their events are not shown, state events
        still are), the push rules' version and their ruleset's cache key (read with the
        stream positions: the ``m.push_rules`` marker's stream position and row)."""
        found = self.start.account_data
        content = found.get(IGNORED_USERS_TYPE, (None, 0, 0))[0]
        users = content.get("ignored_users") if isinstance(content, dict) else None
        ignored = (
            frozenset(u for u in users if isinstance(u, str)) if isinstance(users, dict) else frozenset()
        )
        _, version, row_id = found.get(account_data_store.PUSH_RULES_TYPE, (None, 0, 0))
        return ignored, version, (row_id, version)

    def _get_ruleset(self) -> dict[str, list[dict[str, Any]]]:
        if self.ruleset is None:
            self.ruleset = push_actions.get_ruleset(user_id=self.user_id, cache_key=self.rules_key)
        return self.ruleset

    # -- rooms -------------------------------------------------------------------------------

    def _rooms(self, memberships: list[MembershipInfo]) -> dict[str, Any]:
        since = self.since
        changed = (lambda m: True) if since is None else (lambda m: m.stream_ordering > since.events)
        joined = [m for m in memberships if m.membership == "join"]
        invites = [
            m for m in memberships if m.membership == "invite" and changed(m) and m.sender not in self.ignored
        ]
        knocks = [m for m in memberships if m.membership == "knock" and changed(m)]
        if since is None:
            leaves = (
                [m for m in memberships if m.membership in ("leave", "ban")]
                if self.f.room.include_leave
                else []
            )
        else:
            leaves = [m for m in memberships if m.membership in ("leave", "ban") and changed(m)]
        if leaves:
            forgotten = sync_store.get_forgotten_room_nids(self.user_id, [m.room_nid for m in leaves])
            leaves = [m for m in leaves if m.room_nid not in forgotten]

        rooms = self._timeline_rooms(joined, leaves)
        self._load_timelines(rooms)
        self._filter_visibility(rooms)
        self._summaries(rooms)
        self._state(rooms)
        self._ephemeral(rooms)
        self._room_account_data(rooms)

        out: dict[str, Any] = {}
        join_out: dict[str, Any] = {}
        leave_out: dict[str, Any] = {}
        joined_rooms = [r for r in rooms.values() if r.section == "join"]
        included = [r for r in joined_rooms if self.initial or r.full_state or self._has_content(r)]
        counts = self._unread_counts(included)
        serialized = self._serialize_rooms(rooms.values())
        for r in included:
            timeline_events, state_events = serialized[r.m.room_nid]
            entry: dict[str, Any] = {
                "timeline": self._timeline_entry(r, timeline_events),
                "state": _event_batch(state_events),
                "ephemeral": _event_batch(r.ephemeral),
                "account_data": _event_batch(r.account_data),
            }
            if r.summary is not None:
                entry["summary"] = r.summary
            c = counts.get(r.m.room_nid)
            if c is not None:
                if self.f.room.timeline.unread_thread_notifications:
                    entry["unread_notifications"] = {
                        "notification_count": c.main[0],
                        "highlight_count": c.main[1],
                    }
                    if c.threads:
                        entry["unread_thread_notifications"] = {
                            root: {"notification_count": n, "highlight_count": h}
                            for root, (n, h) in c.threads.items()
                        }
                else:
                    entry["unread_notifications"] = {
                        "notification_count": c.notification_count,
                        "highlight_count": c.highlight_count,
                    }
            join_out[r.m.room_id] = entry
        for r in rooms.values():
            if r.section != "leave":
                continue
            timeline_events, state_events = serialized[r.m.room_nid]
            leave_out[r.m.room_id] = {
                "timeline": self._timeline_entry(r, timeline_events),
                "state": _event_batch(state_events),
                "account_data": _event_batch(r.account_data),
            }
        if join_out:
            out["join"] = join_out
        if leave_out:
            out["leave"] = leave_out
        invite_out, knock_out = self._stripped_rooms(invites, knocks)
        if invite_out:
            out["invite"] = invite_out
        if knock_out:
            out["knock"] = knock_out
        return out

    @staticmethod
    def _has_content(r: _Room) -> bool:
        return bool(r.events or r.state_ids or r.ephemeral or r.account_data)

    def _timeline_entry(self, r: _Room, events: list[dict[str, Any]]) -> dict[str, Any]:
        if r.events:
            first = r.events[0]
            prev_batch = str(RoomToken(first.depth, max((first.stream_ordering or 1) - 1, 0)))
        else:
            prev_batch = str(self.current)
        return {"events": events, "limited": r.limited, "prev_batch": prev_batch}

    def _timeline_rooms(self, joined: list[MembershipInfo], leaves: list[MembershipInfo]) -> dict[int, _Room]:
        since = self.since
        rooms: dict[int, _Room] = {}
        newly_joined: set[int] = set()
        if since is not None:
            newly_joined = self._newly_joined(joined)
        news: dict[int, int] = {}
        if since is not None and self._moved("events"):
            if self._event_q() is None:
                # Which rooms have news and their timelines, together (one query on PostgreSQL).
                ranges = {m.room_nid: (since.events, self.current.events) for m in joined}
                ranges.update({m.room_nid: (since.events, m.stream_ordering) for m in leaves})
                self.prefetched = sync_store.get_new_timelines(ranges, limit=self.f.timeline_limit)
                self.prefetch_ranges = ranges
                news = {nid: events[-1].stream_ordering or 0 for nid, events in self.prefetched.items()}
            else:
                candidates = [m.room_nid for m in joined] + [m.room_nid for m in leaves]
                news = sync_store.get_rooms_with_new_events(
                    candidates, after=since.events, upto=self.current.events
                )
        self.news = news
        for m in joined:
            r = _Room(m, "join")
            if since is None or self.p.full_state or m.room_nid in newly_joined:
                r.full_state = True
                # Spec: a newly joined room is synced as from scratch (its recent history, full state).
                after = None if since is None or m.room_nid in newly_joined else since.events
                r.timeline_range = (after, self.current.events)
            elif m.room_nid in news:
                r.timeline_range = (since.events, self.current.events)
            rooms[m.room_nid] = r
        for m in leaves:
            r = _Room(m, "leave", full_state=since is None or self.p.full_state)
            r.timeline_range = (None if since is None else since.events, m.stream_ordering)
            rooms[m.room_nid] = r
        return rooms

    def _newly_joined(self, joined: list[MembershipInfo]) -> set[int]:
        """Rooms the user was not joined to at ``since`` (they get full state)."""
        assert self.since is not None
        recent = [m.room_nid for m in joined if m.stream_ordering > self.since.events]
        if not recent:
            return set()
        firsts = sync_store.get_first_own_member_event_after(self.user_id, recent, self.since.events)
        key: StateKey = (MEMBER, self.user_id)
        wanted = {e.state_group_before: [key] for e in firsts.values() if e.state_group_before is not None}
        at = timeline.get_state_ids_at_groups(wanted) if wanted else {}
        prior_nids = {
            nid: at.get(e.state_group_before, {}).get(key) if e.state_group_before is not None else None
            for nid, e in firsts.items()
        }
        loaded = event_store.get_events_by_nids([n for n in prior_nids.values() if n is not None])
        out: set[int] = set()
        for nid in recent:
            prior = prior_nids.get(nid)
            before = loaded[prior].event.membership if prior is not None and prior in loaded else None
            if before != "join":
                out.add(nid)
        return out

    def _event_q(self) -> Q | None:
        """The timeline filter's SQL part; None when it filters nothing."""
        q = self.f.room.timeline.sql_q()
        if self.ignored:
            q &= ~Q(sender__in=sorted(self.ignored), state_key__isnull=True)
        return q if q else None

    def _load_timelines(self, rooms: Mapping[int, _Room]) -> None:
        tf: RoomEventFilter = self.f.room.timeline
        limit = self.f.timeline_limit
        ranges: dict[int, tuple[int | None, int]] = {}
        recent: dict[int, list[StoredEvent]] = {}
        for nid, r in rooms.items():
            if r.timeline_range is not None and tf.allows_room(r.m.room_id):
                ranges[nid] = r.timeline_range
                if self.prefetch_ranges.get(nid) == r.timeline_range:
                    recent[nid] = list(self.prefetched.get(nid, ()))
        if not ranges:
            return
        event_q = self._event_q()
        to_read = {nid: span for nid, span in ranges.items() if nid not in recent}
        if to_read:
            recent.update(sync_store.get_recent_events(to_read, limit=limit, event_q=event_q))
        for nid, events in recent.items():
            r = rooms[nid]
            if len(events) > limit:
                r.limited = True
                events = events[-limit:]
            else:
                after, upto = ranges[nid]
                if event_q is None and upto == self.current.events:
                    # No lower bound: the room's whole timeline (stream positions start at 1).
                    self.complete[nid] = (after if after is not None else 0, list(events))
            if tf.contains_url is not None:
                events = [e for e in events if ("url" in e.event.content) == tf.contains_url]
            r.events = events

    def _filter_visibility(self, rooms: Mapping[int, _Room]) -> None:
        """History visibility (``dagcore.actions.room_access``) where it can matter: timelines
        reaching back before the user's current membership, and rooms they left.

        One call for all rooms: the decision depends on each event's own state
        (its ``state_group_before``) and on the reader's user, not on the room, and
        a departed user's timeline range already ends at their departure.
        """
        needing = [
            r
            for r in rooms.values()
            if r.events and (r.section == "leave" or (r.events[0].stream_ordering or 0) < r.m.stream_ordering)
        ]
        if not needing:
            return
        room = sync_store.get_rooms_by_nids([needing[0].m.room_nid]).get(needing[0].m.room_nid)
        if room is None:
            return
        reader = RoomReader(
            room=room,
            user_id=self.user_id,
            membership="join",
            max_stream=None,
            is_peeking=False,
            state_group=room.current_state_group,
        )
        visible = {e.nid for e in filter_visible_events(reader, [e for r in needing for e in r.events])}
        for r in needing:
            r.events = [e for e in r.events if e.nid in visible]

    def _summaries(self, rooms: Mapping[int, _Room]) -> None:
        """Spec ``summary``: sent with full state and whenever the membership may have changed."""
        wanted = [
            r
            for r in rooms.values()
            if r.section == "join"
            and (r.full_state or r.limited or any(e.event.type == MEMBER for e in r.events))
        ]
        if not wanted:
            return
        nids = [r.m.room_nid for r in wanted]
        groups = {r.m.room_nid: r.m.current_state_group for r in wanted}
        counts = sync_store.get_membership_counts(nids, state_groups=groups)
        # Heroes name rooms that have no name: spec "required if the room's m.room.name or
        # m.room.canonical_alias state events are unset or empty".
        named = sync_store.get_current_state_for_rooms(nids, NAMING_KEYS, state_groups=groups)
        unnamed = [
            nid
            for nid in nids
            if not any(
                isinstance(e.content.get(field_name), str) and e.content.get(field_name)
                for e, field_name in ((named.get(nid, {}).get(k), f) for k, f in NAMING_FIELDS)
                if e is not None
            )
        ]
        heroes = sync_store.get_heroes(unnamed, exclude_user=self.user_id) if unnamed else {}
        for r in wanted:
            c = counts.get(r.m.room_nid, {})
            r.summary = {
                "m.joined_member_count": c.get("join", 0),
                "m.invited_member_count": c.get("invite", 0),
            }
            if r.m.room_nid in heroes:
                r.summary["m.heroes"] = heroes[r.m.room_nid]

    # -- state ------------------------------------------------------------------------------

    def _state(self, rooms: Mapping[int, _Room]) -> None:
        since = self.since
        sf = self.f.room.state
        lazy = sf.lazy_load_members
        start_group: dict[int, int | None] = {}
        missing_start: dict[int, int] = {}
        for nid, r in rooms.items():
            if r.events:
                start_group[nid] = r.events[0].state_group_before
            elif r.section == "join":
                start_group[nid] = r.m.current_state_group
            else:
                missing_start[nid] = r.m.stream_ordering
        if missing_start:
            start_group.update(sync_store.get_state_groups_at_stream(missing_start))
        delta_rooms = [nid for nid, r in rooms.items() if not r.full_state and r.limited]
        since_group: dict[int, int | None] = {}
        if delta_rooms and since is not None:
            since_group = sync_store.get_state_groups_at_stream({nid: since.events for nid in delta_rooms})
        full_groups = {start_group[nid] for nid, r in rooms.items() if r.full_state or r.limited}
        full_groups |= {g for g in since_group.values()}
        states = sync_store.get_full_state_ids(g for g in full_groups if g is not None)

        # Which members lazy-loading wants: timeline senders, the user on full state, the heroes.
        wanted_members: dict[int, set[str]] = {}
        for nid, r in rooms.items():
            if not lazy:
                continue
            users = {e.event.sender for e in r.events}
            if r.full_state:
                users.add(self.user_id)
            if r.summary is not None:
                users.update(r.summary.get("m.heroes", ()))
            wanted_members[nid] = users

        lookups: dict[int, list[StateKey]] = {}
        for nid, r in rooms.items():
            group = start_group.get(nid)
            if r.full_state or r.limited:
                start = states.get(group, {}) if group is not None else {}
                if r.full_state:
                    ids = dict(start)
                else:
                    since_at = since_group.get(nid)
                    before = states.get(since_at, {}) if since_at is not None else {}
                    # Spec: the state between ``since`` and the start of the timeline.
                    ids = {k: v for k, v in start.items() if before.get(k) != v}
                if lazy:
                    gap_members = {k for k in ids if k[0] == MEMBER} if not r.full_state else set()
                    ids = {
                        k: v
                        for k, v in ids.items()
                        if k[0] != MEMBER or k[1] in wanted_members[nid] or k in gap_members
                    }
                    for user in wanted_members[nid]:
                        if (MEMBER, user) in start and (MEMBER, user) not in ids:
                            ids[(MEMBER, user)] = start[(MEMBER, user)]
                r.state_ids = ids
            elif lazy and wanted_members.get(nid) and group is not None:
                lookups[group] = lookups.get(group, []) + [(MEMBER, u) for u in wanted_members[nid]]
        if lookups:
            at = timeline.get_state_ids_at_groups(lookups)
            for nid, r in rooms.items():
                if r.full_state or r.limited or not lazy:
                    continue
                group = start_group.get(nid)
                if group is None:
                    continue
                found = at.get(group, {})
                r.state_ids = {k: v for k, v in found.items() if k[1] in wanted_members.get(nid, set())}
        if lazy and not sf.include_redundant_members:
            self._drop_redundant_members(rooms)

    def _drop_redundant_members(self, rooms: Mapping[int, _Room]) -> None:
        """Lazy-loading: skip member events this device already has (gap members excepted)."""
        for nid, r in rooms.items():
            key = (self.user_id, self.p.device_key, nid)
            sent = {} if r.full_state else _sent_members.get(key)
            members = {k[1]: v for k, v in r.state_ids.items() if k[0] == MEMBER}
            if not r.full_state and not r.limited:
                r.state_ids = {k: v for k, v in r.state_ids.items() if k[0] != MEMBER or sent.get(k[1]) != v}
            timeline_members = {
                e.event.state_key: e.nid
                for e in r.events
                if e.event.type == MEMBER and e.event.state_key is not None
            }
            _sent_members.put(key, {**members, **timeline_members}, replace=r.full_state)

    def _serialize_rooms(
        self, rooms: Iterable[_Room]
    ) -> dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """Timeline and state events of every room, loaded and annotated in a bounded number of queries."""
        rooms = list(rooms)
        all_state_nids = {n for r in rooms for n in r.state_ids.values()}
        loaded = event_store.get_events_by_nids(all_state_nids) if all_state_nids else {}
        sf = self.f.room.state
        state_lists: dict[int, list[StoredEvent]] = {}
        for r in rooms:
            timeline_ids = {e.event_id for e in r.events}
            events = [loaded[n] for n in r.state_ids.values() if n in loaded]
            state_lists[r.m.room_nid] = sorted(
                (
                    e
                    for e in events
                    if e.event_id not in timeline_ids
                    and sf.allows_room(r.m.room_id)
                    and sf.matches(event_type=e.event.type, sender=e.event.sender)
                ),
                key=lambda e: (e.event.type, e.event.state_key or ""),
            )
        all_timeline = [e for r in rooms for e in r.events]
        all_state = [e for events in state_lists.values() for e in events]
        timeline_json = self._serialize(all_timeline, timeline_events=True)
        state_json = self._serialize(all_state, timeline_events=False)
        out: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
        ti = si = 0
        for r in rooms:
            n_t = len(r.events)
            n_s = len(state_lists[r.m.room_nid])
            out[r.m.room_nid] = (timeline_json[ti : ti + n_t], state_json[si : si + n_s])
            ti += n_t
            si += n_s
        return out

    # -- ephemeral, account data, counts ---------------------------------------------------

    def _ephemeral(self, rooms: Mapping[int, _Room]) -> None:
        ef = self.f.room.ephemeral
        joined = [nid for nid, r in rooms.items() if r.section == "join" and ef.allows_room(r.m.room_id)]
        if not joined:
            return
        since = self.since
        if ef.matches(event_type="m.typing") and self._moved("typing"):
            if since is None:
                typers = typing_store.get_typing_users(room_nids=joined, now=self.now)
            else:
                changed = typing_store.get_typing_rooms_changed(
                    room_nids=joined, after=since.typing, upto=self.current.typing
                )
                typers = typing_store.get_typing_users(room_nids=sorted(changed), now=self.now)
                for nid in changed:
                    typers.setdefault(nid, [])
            for nid, users in typers.items():
                rooms[nid].ephemeral.append({"type": "m.typing", "content": {"user_ids": users}})
        if ef.matches(event_type="m.receipt") and self._moved("receipts"):
            rows = receipt_store.get_receipts_for_rooms(
                room_nids=joined,
                viewer=self.user_id,
                after=None if since is None else since.receipts,
                upto=self.current.receipts,
            )
            by_room: dict[str, dict[str, Any]] = {}
            for row in rows:
                if row.user_id in self.ignored or (ef.senders is not None and row.user_id not in ef.senders):
                    continue
                if row.user_id in ef.not_senders:
                    continue
                data: dict[str, Any] = {"ts": row.ts}
                if row.thread_id:
                    data["thread_id"] = row.thread_id
                content = by_room.setdefault(row.room_id, {})
                content.setdefault(row.event_id, {}).setdefault(row.receipt_type, {})[row.user_id] = data
            nid_of = {r.m.room_id: nid for nid, r in rooms.items()}
            for room_id, content in by_room.items():
                rooms[nid_of[room_id]].ephemeral.append({"type": "m.receipt", "content": content})
        for r in rooms.values():
            if r.ephemeral:
                r.ephemeral = self._fields(ef.apply_limit(r.ephemeral))

    def _room_account_data(self, rooms: Mapping[int, _Room]) -> None:
        if not self._moved("account_data"):
            return
        af = self.f.room.account_data
        by_room = {r.m.room_id: r for r in rooms.values() if af.allows_room(r.m.room_id)}
        if not by_room:
            return
        entries = account_data_store.get_account_data_entries(
            user_id=self.user_id,
            after=None if self.since is None else self.since.account_data,
            upto=self.current.account_data,
            room_ids=by_room,
            include_global=False,
        )
        for entry in entries:
            if af.matches(event_type=entry.type):
                by_room[entry.room_id].account_data.append({"type": entry.type, "content": entry.content})
        for r in by_room.values():
            r.account_data = self._fields(af.apply_limit(r.account_data))

    def _unread_counts(self, rooms: Sequence[_Room]) -> dict[int, push_actions.UnreadCounts]:
        if not rooms:
            return {}
        loaded = dict(self.complete)
        if self.since is not None:
            # Rooms without news had no timeline events since ``since``: nothing to count there.
            for r in rooms:
                if r.m.room_nid not in self.news and r.m.room_nid not in loaded:
                    loaded[r.m.room_nid] = (self.since.events, [])
        refs = [
            push_actions.RoomRef(
                r.m.room_nid, r.m.room_id, r.m.stream_ordering, r.m.current_state_group, r.m.displayname
            )
            for r in rooms
        ]
        return push_actions.get_unread_counts(
            user_id=self.user_id,
            rooms=refs,
            upto=self.current.events,
            ruleset=self._get_ruleset(),
            ignored_users=self.ignored,
            rules_version=self.rules_version,
            loaded=loaded,
            displaynames_known=True,
        )

    # -- invites and knocks ------------------------------------------------------------------

    def _stripped_rooms(
        self, invites: list[MembershipInfo], knocks: list[MembershipInfo]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        rooms = invites + knocks
        if not rooms:
            return {}, {}
        nids = [m.room_nid for m in rooms]
        state = sync_store.get_current_state_for_rooms(
            nids, STRIPPED_STATE_KEYS, state_groups={m.room_nid: m.current_state_group for m in rooms}
        )
        own = event_store.get_events_by_nids([m.event_nid for m in rooms])
        invite_out: dict[str, Any] = {}
        knock_out: dict[str, Any] = {}
        for m in rooms:
            member = own.get(m.event_nid)
            events: list[dict[str, Any]] = []
            carried = member.event.pdu.get("unsigned", {}).get("invite_room_state") if member else None
            if isinstance(carried, list) and not state.get(m.room_nid):
                # A room we only know from a remote invite: the state the inviting server sent.
                events = [e for e in carried if isinstance(e, dict)]
            else:
                events = strip_state(state.get(m.room_nid, {}).values())
            if member is not None:
                events.extend(strip_state([member.event]))
            if m.membership == "invite":
                invite_out[m.room_id] = {"invite_state": {"events": events}}
            else:
                knock_out[m.room_id] = {"knock_state": {"events": events}}
        return invite_out, knock_out

    # -- global sections -------------------------------------------------------------------

    def _presence(self, memberships: list[MembershipInfo]) -> list[dict[str, Any]]:
        if not presence_enabled() or not self._moved("presence"):
            return []
        pf = self.f.presence
        if not pf.matches(event_type="m.presence"):
            return []
        joined = [m.room_nid for m in memberships if m.membership == "join"]
        if self.since is None:
            rows = presence_store.get_current_presence_of_room_members(
                viewer=self.user_id, room_nids=joined, upto=self.current.presence
            )
        else:
            changed = presence_store.get_presence_changed(
                after=self.since.presence, upto=self.current.presence
            )
            visible = room_store.get_users_sharing_a_room(
                user_id=self.user_id, candidates=[r.user_id for r in changed]
            )
            rows = [r for r in changed if r.user_id in visible or r.user_id == self.user_id]
        events = [
            {"type": "m.presence", "sender": row.user_id, "content": presence_content(row, now=self.now)}
            for row in sorted(rows, key=lambda r: r.stream_id)
            if pf.matches(event_type="m.presence", sender=row.user_id)
        ]
        return self._fields(pf.apply_limit(events))

    def _global_account_data(self) -> list[dict[str, Any]]:
        if not self._moved("account_data"):
            return []
        af = self.f.account_data
        entries = account_data_store.get_account_data_entries(
            user_id=self.user_id,
            after=None if self.since is None else self.since.account_data,
            upto=self.current.account_data,
            room_ids=(),
        )
        events: list[dict[str, Any]] = []
        seen_push_rules = False
        for entry in entries:
            if entry.room_id:
                continue
            content = entry.content
            if entry.type == account_data_store.PUSH_RULES_TYPE:
                seen_push_rules = True
                content = {"global": self._get_ruleset()}
            events.append({"type": entry.type, "content": content})
        if self.since is None and not seen_push_rules:
            # Clients read their rules from the initial sync (spec: "Push Rules: Events").
            events.append(
                {"type": account_data_store.PUSH_RULES_TYPE, "content": {"global": self._get_ruleset()}}
            )
        events = [e for e in events if af.matches(event_type=e["type"])]
        return self._fields(af.apply_limit(events))

    def _to_device(self) -> tuple[list[dict[str, Any]], int]:
        if self.p.device_id is None:
            return [], self.current.to_device
        acknowledged = self.since.to_device if self.since is not None else None
        if self.since is not None and not self._moved("to_device"):
            self._acknowledge_to_device()
            return [], self.current.to_device
        messages, position = get_device_inbox(
            user_id=self.user_id,
            device_id=self.p.device_id,
            acknowledged=acknowledged,
            upto=self.current.to_device,
        )
        _acknowledged.put((self.user_id, self.p.device_id), acknowledged or 0)
        return [to_device_event(m) for m in messages], position

    def _acknowledge_to_device(self) -> None:
        """Delete what the ``since`` token acknowledges (once per position, per process)."""
        assert self.since is not None and self.p.device_id is not None
        key = (self.user_id, self.p.device_id)
        position = self.since.to_device
        if position and _acknowledged.get(key) != position:
            acknowledge_device_inbox(user_id=self.user_id, device_id=self.p.device_id, upto=position)
            _acknowledged.put(key, position)

    def _device_lists(self, memberships: list[MembershipInfo]) -> dict[str, Any]:
        """Spec "E2E extensions to /sync": users whose devices changed or who now share a room
        with the user (``changed``), and users who no longer share any (``left``)."""
        since = self.since
        if since is None:
            return {}
        changed: set[str] = set()
        left_candidates: set[str] = set()
        if self._moved("device_lists"):
            moved = device_list_store.get_changed_users(
                after=since.device_lists, upto=self.current.device_lists
            )
            if moved:
                changed |= room_store.get_users_sharing_a_room(user_id=self.user_id, candidates=moved)
                if self.user_id in moved:
                    changed.add(self.user_id)
        if self._moved("events"):
            joined = [m.room_nid for m in memberships if m.membership == "join"]
            own_changes = [m for m in memberships if m.stream_ordering > since.events]
            newly = [m.room_nid for m in own_changes if m.membership == "join"]
            gone = [m.room_nid for m in own_changes if m.membership in ("leave", "ban")]
            if newly:
                changed |= sync_store.get_joined_user_ids(newly, exclude_user=self.user_id)
            if gone:
                left_candidates |= sync_store.get_joined_user_ids(gone, exclude_user=self.user_id)
            for _, user, membership in self._member_events_since(joined):
                if user == self.user_id:
                    continue
                if membership == "join":
                    changed.add(user)
                elif membership in ("leave", "ban"):
                    left_candidates.add(user)
        left: set[str] = set()
        if left_candidates:
            still = room_store.get_users_sharing_a_room(user_id=self.user_id, candidates=left_candidates)
            left = left_candidates - still
            changed -= left
        if not changed and not left:
            return {}
        return {"changed": sorted(changed), "left": sorted(left)}

    def _member_events_since(self, joined: list[int]) -> list[tuple[int, str, str]]:
        """``(room nid, user, membership)`` of member events in the joined rooms since ``since``:
        only rooms with new events can have any, and complete timelines already hold them."""
        assert self.since is not None
        rooms = [nid for nid in joined if nid in self.news]
        out: list[tuple[int, str, str]] = []
        to_read = []
        for nid in rooms:
            have = self.complete.get(nid)
            if have is None or have[0] != self.since.events:
                to_read.append(nid)
                continue
            for e in have[1]:
                if e.event.type == MEMBER and e.event.state_key is not None:
                    content = e.event.content
                    membership = content.get("membership") if isinstance(content, dict) else None
                    out.append(
                        (nid, e.event.state_key, membership if isinstance(membership, str) else "leave")
                    )
        out.extend(
            sync_store.get_member_events_between(to_read, after=self.since.events, upto=self.current.events)
        )
        return out


def build_sync(params: SyncParams) -> SyncResult:
    return SyncBuilder(params).build()

"""Push rules of users, unread-notification counts and the notification list.

Spec: client-server API "Push Notifications": "Push Rules: API", "Listing
Notifications", "Receiving notifications". Rule changes move the
``account_data`` stream (an ``m.push_rules`` marker row), so clients receive
their new ruleset in ``/sync`` as the spec's ``m.push_rules`` account data.

Unread counts are computed lazily, when a ``/sync`` needs them, and never per
recipient at send time: a message in a room of 10,000 members costs nothing
until a member syncs, and then only that member's evaluation. Counts are kept
in ``UnreadCounter`` rows valid for the user's receipts and rules of the time,
so a later sync evaluates only events newer than the counter; a fresh count
evaluates at most ``MAX_COUNTED_EVENTS`` events per room.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dagcore.actions.account_data import do_set_account_data
from dagcore.caching import BoundedCache
from dagcore.http.errors import MatrixError
from dagcore.http.params import ascii_uint
from dagcore.protocol import push_rules as rules
from dagcore.protocol.auth_rules.power import get_user_power_level
from dagcore.protocol.events import Event, StateKey
from dagcore.store import account_data as account_data_store
from dagcore.store import push_rules as store
from dagcore.store import receipts as receipt_store
from dagcore.store import sync as sync_store
from dagcore.store import transaction
from dagcore.store.events import StoredEvent

#: Events evaluated at most when a room's count is computed afresh (clients show "99+" anyway).
MAX_COUNTED_EVENTS = 500
#: A counter moved on by the events a sync had loaded anyway is written back once it has
#: counted this many events since its row was written (else kept in this process, below).
SAVE_COUNTER_EVERY = 25


@dataclass(frozen=True)
class _Ahead:
    """A user's counter in a room, newer than its row: the row as read (``base``: from_stream,
    rules_version, upto_stream), the newer counter, and the events counted since that row."""

    base: tuple[int, int, int]
    counter: store.Counter
    unsaved: int


#: Counters ahead of their rows, per (user ID, room nid). Writing the row on every /sync with
#: news was the one write of a woken long-poll (a commit, a WAL flush, per member per
#: message). A counter is a function of (receipt fingerprint, rules version, position), so a
#: newer one of the same fingerprint and version is as right as its row, and the row still
#: answers every other process: it counts the few events since (at most
#: ``SAVE_COUNTER_EVERY``). An entry is used only while its row is exactly the one it was
#: computed from; any other write of the row (another process, a receipt, a purge) wins.
_counters_ahead: BoundedCache[tuple[str, int], _Ahead] = BoundedCache(
    "push_rules.counters_ahead", maxsize=20_000
)


def _copy_counter(c: store.Counter) -> store.Counter:
    return replace(c, threads={root: list(v) for root, v in c.threads.items()})


#: Events examined at most by one /notifications request.
MAX_NOTIFICATION_SCAN = 2000
MAX_NOTIFICATIONS_LIMIT = 100
DEFAULT_NOTIFICATIONS_LIMIT = 20

CREATE_KEY: StateKey = ("m.room.create", "")
POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")


# --------------------------------------------------------------------------- rulesets


#: Rulesets by user and ``m.push_rules`` marker: every change of a user's rules moves the
#: marker to a new stream position (``_rules_changed``), so a marker names the rules for good.
_ruleset_cache: BoundedCache[tuple[str, tuple[int, int]], dict[str, list[dict[str, Any]]]] = BoundedCache(
    "push_rules.rulesets",
    maxsize=1_000,  # ~14 KB each
)


def get_ruleset(*, user_id: str, cache_key: tuple[int, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The user's ``global`` ruleset: server defaults merged with their rules (one query).

    ``cache_key``: the ``(row id, stream position)`` of the user's ``m.push_rules`` account
    data marker (``(0, 0)``: none), as the caller read it; a ruleset built earlier in this
    process for the same marker is reused (no query). Callers must not modify the result.
    """
    if cache_key is None:
        return _build_ruleset(user_id)
    cached = _ruleset_cache.get((user_id, cache_key))
    if cached is not None:
        return cached
    ruleset = _build_ruleset(user_id)
    _ruleset_cache.put((user_id, cache_key), ruleset)
    return ruleset


def _build_ruleset(user_id: str) -> dict[str, list[dict[str, Any]]]:
    user_rules: dict[str, list[dict[str, Any]]] = {}
    changes: dict[tuple[str, str], rules.DefaultRuleChange] = {}
    for row in store.get_push_rule_rows(user_id):
        if row.is_default:
            changes[(row.kind, row.rule_id)] = rules.DefaultRuleChange(
                enabled=row.enabled, actions=row.actions
            )
            continue
        user_rules.setdefault(row.kind, []).append(
            {
                "rule_id": row.rule_id,
                "enabled": row.enabled if row.enabled is not None else True,
                "actions": row.actions or [],
                "conditions": row.conditions,
                "pattern": row.pattern,
            }
        )
    return rules.build_ruleset(user_id, user_rules, changes)


def get_rules_version(*, user_id: str) -> int:
    """Position of the user's last rule change (0: never changed)."""
    return account_data_store.get_account_data_stream_id(
        user_id=user_id, room_id=account_data_store.GLOBAL, data_type=account_data_store.PUSH_RULES_TYPE
    )


def _rules_changed(user_id: str) -> None:
    # The marker's content is never served: /sync and the API compute the ruleset.
    do_set_account_data(
        user_id=user_id, room_id=None, data_type=account_data_store.PUSH_RULES_TYPE, content={}
    )


def check_kind(kind: str) -> None:
    if kind not in rules.KINDS:
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown rule kind: {kind[:50]}")


def access_rule(*, user_id: str, kind: str, rule_id: str) -> dict[str, Any]:
    check_kind(kind)
    found = rules.find_rule(get_ruleset(user_id=user_id), kind, rule_id)
    if found is None:
        raise MatrixError(404, "M_NOT_FOUND", "The push rule was not found.")
    return dict(found)


@dataclass(frozen=True)
class NewPushRule:
    """A user-defined rule to create or replace (``tribune.inputs.parse_push_rule``): its kind
    is known, its ID not reserved, its fields valid and its anchors user-defined rules."""

    kind: str
    rule_id: str
    conditions: list[dict[str, Any]]
    actions: list[Any]
    pattern: str | None
    #: Place it just before or after this rule of the same kind (spec: "setPushRule").
    before: str | None = None
    after: str | None = None


def check_put_rule(*, user_id: str, rule: NewPushRule) -> None:
    """Create or replace a user-defined rule, placed by ``before``/``after`` (spec: "setPushRule")."""
    kind, rule_id, before, after = rule.kind, rule.rule_id, rule.before, rule.after
    with transaction.atomic():
        existing = store.lock_user_rules(user_id=user_id, kind=kind)
        ids = [rid for _, rid, _ in existing]
        for anchor in (before, after):
            if anchor is not None and (anchor not in ids or anchor == rule_id):
                raise MatrixError(400, "M_UNKNOWN", f"before/after rule not found: {anchor[:100]}")
        order = [rid for rid in ids if rid != rule_id]
        if before is not None:
            order.insert(order.index(before), rule_id)
        elif after is not None:
            order.insert(order.index(after) + 1, rule_id)
        elif rule_id in ids:
            order.insert(ids.index(rule_id), rule_id)  # an update keeps its place
        else:
            order.insert(0, rule_id)  # a new rule is the most important (spec)
        priority_of = {rid: len(order) - i for i, rid in enumerate(order)}
        store.upsert_user_rule(
            user_id=user_id,
            kind=kind,
            rule_id=rule_id,
            conditions=rule.conditions,
            actions=rule.actions,
            pattern=rule.pattern,
            priority=priority_of[rule_id],
        )
        store.set_priorities(
            row_priorities=[
                (row_id, priority_of[rid])
                for row_id, rid, p in existing
                if rid != rule_id and p != priority_of[rid]
            ]
        )
        _rules_changed(user_id)


def check_delete_rule(*, user_id: str, kind: str, rule_id: str) -> None:
    check_kind(kind)
    if rule_id.startswith("."):
        # Server-default rules can be disabled, not deleted.
        if rules.find_rule(rules.default_rules(user_id), kind, rule_id) is not None:
            raise MatrixError(400, "M_INVALID_PARAM", "Server-default rules cannot be deleted")
        raise MatrixError(404, "M_NOT_FOUND", "The push rule was not found.")
    with transaction.atomic():
        if not store.delete_user_rule(user_id=user_id, kind=kind, rule_id=rule_id):
            raise MatrixError(404, "M_NOT_FOUND", "The push rule was not found.")
        _rules_changed(user_id)


def check_set_rule_enabled(*, user_id: str, kind: str, rule_id: str, enabled: bool) -> None:
    rule = access_rule(user_id=user_id, kind=kind, rule_id=rule_id)
    with transaction.atomic():
        store.set_rule_enabled(
            user_id=user_id, kind=kind, rule_id=rule_id, enabled=enabled, is_default=rule["default"]
        )
        _rules_changed(user_id)


def check_set_rule_actions(*, user_id: str, kind: str, rule_id: str, actions: list[Any]) -> None:
    """Set a rule's actions (already valid: ``tribune.inputs.parse_rule_actions``)."""
    rule = access_rule(user_id=user_id, kind=kind, rule_id=rule_id)
    with transaction.atomic():
        store.set_rule_actions(
            user_id=user_id, kind=kind, rule_id=rule_id, actions=actions, is_default=rule["default"]
        )
        _rules_changed(user_id)


# --------------------------------------------------------------------------- evaluation context


@dataclass(frozen=True)
class RoomRef:
    room_nid: int
    room_id: str
    #: Where counting starts when the user has no receipt: their join.
    joined_at: int
    #: The room's current state group as the caller saw it (lets unchanged rooms' power
    #: levels and member counts come from memory), and the user's display name there
    #: (used when ``get_unread_counts(displaynames_known=True)``).
    state_group: int | None = None
    displayname: str | None = None


@dataclass
class RoomContexts:
    """Per room, what push rule conditions read, loaded for many rooms in a few queries."""

    user_id: str
    member_counts: dict[int, int] = field(default_factory=dict)
    display_names: dict[int, str | None] = field(default_factory=dict)
    state: dict[int, dict[StateKey, Event]] = field(default_factory=dict)

    def context_for(self, room_nid: int, sender: str) -> rules.EvalContext:
        state = self.state.get(room_nid, {})
        power_levels = state.get(POWER_LEVELS_KEY)
        notifications = power_levels.content.get("notifications") if power_levels is not None else None
        try:
            level = get_user_power_level(sender, state) if CREATE_KEY in state else 0
        except Exception:  # malformed power levels: treat the sender as powerless
            level = 0
        return rules.EvalContext(
            user_id=self.user_id,
            room_member_count=self.member_counts.get(room_nid, 0),
            display_name=self.display_names.get(room_nid),
            sender_power_level=level,
            notification_levels=notifications if isinstance(notifications, dict) else {},
        )


def load_room_contexts(
    *,
    user_id: str,
    room_nids: Sequence[int],
    state_groups: Mapping[int, int | None] | None = None,
    display_names: Mapping[int, str | None] | None = None,
) -> RoomContexts:
    """What rule conditions read of these rooms: at most three queries, none for rooms whose
    ``state_groups`` were seen before and with ``display_names`` given."""
    counts = sync_store.get_membership_counts(room_nids, state_groups=state_groups)
    return RoomContexts(
        user_id=user_id,
        member_counts={nid: c.get("join", 0) for nid, c in counts.items()},
        display_names=dict(display_names)
        if display_names is not None
        else sync_store.get_own_displaynames(user_id, room_nids),
        state=sync_store.get_current_state_for_rooms(
            room_nids, [CREATE_KEY, POWER_LEVELS_KEY], state_groups=state_groups
        ),
    )


def _thread_root(stored: StoredEvent) -> str:
    relates = stored.event.content.get("m.relates_to")
    if (
        isinstance(relates, dict)
        and relates.get("rel_type") == "m.thread"
        and isinstance(relates.get("event_id"), str)
    ):
        return str(relates["event_id"])
    return "main"


# --------------------------------------------------------------------------- unread counts


@dataclass(frozen=True)
class UnreadCounts:
    notification_count: int
    highlight_count: int
    #: With threads: main timeline counts, and per thread root.
    main: tuple[int, int]
    threads: dict[str, tuple[int, int]]


def get_unread_counts(
    *,
    user_id: str,
    rooms: Sequence[RoomRef],
    upto: int,
    ruleset: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    ignored_users: frozenset[str] = frozenset(),
    rules_version: int | None = None,
    loaded: Mapping[int, tuple[int, Sequence[StoredEvent]]] | None = None,
    displaynames_known: bool = False,
    kept: dict[int, KeptCounter] | None = None,
) -> dict[int, UnreadCounts]:
    """Unread notification and highlight counts of the user in each room, up to stream ``upto``.

    A bounded number of queries for any number of rooms: counters and receipts (one
    round trip), the events to evaluate (one UNION), the rooms' power levels and member
    counts, and one upsert of the counters that changed.

    ``rules_version``: the user's :func:`get_rules_version`, if the caller read it already.
    ``loaded``: per room, ``(after, events)`` where ``events`` are *all* the room's timeline
    events in ``(after, upto]``, oldest first (e.g. an unfiltered, unlimited ``/sync``
    timeline, or none for a room without news): a counter already at ``after`` or later
    evaluates those instead of reading them again.
    ``kept``: filled with each room's :class:`KeptCounter` (for :func:`count_onwards`).
    """
    if not rooms:
        return {}
    nids = [r.room_nid for r in rooms]
    by_nid = {r.room_nid: r for r in rooms}
    version = rules_version if rules_version is not None else get_rules_version(user_id=user_id)
    counters, receipts = store.get_unread_inputs(
        user_id=user_id, room_nids=nids, receipt_types=receipt_store.READ_TYPES
    )
    fingerprint: dict[int, int] = {}
    unthreaded: dict[int, int] = {}
    main_pos: dict[int, int] = {}
    thread_pos: dict[int, dict[str, int]] = {}
    for nid, _, thread_id, position, stream_id in receipts:
        fingerprint[nid] = max(fingerprint.get(nid, 0), stream_id)
        if thread_id == "":
            unthreaded[nid] = max(unthreaded.get(nid, 0), position)
        elif thread_id == "main":
            main_pos[nid] = max(main_pos.get(nid, 0), position)
        else:
            t = thread_pos.setdefault(nid, {})
            t[thread_id] = max(t.get(thread_id, 0), position)

    fresh: list[store.Counter] = []
    starts: dict[int, int] = {}
    to_count: dict[int, list[StoredEvent]] = {}
    #: Per room: the row as read, and the events counted since it was written.
    bases: dict[int, tuple[int, int, int]] = {}
    unsaved: dict[int, int] = {}
    for nid in nids:
        counter = counters.get(nid)
        if counter is not None:
            bases[nid] = (counter.from_stream, counter.rules_version, counter.upto_stream)
            ahead = _counters_ahead.get((user_id, nid))
            if ahead is not None and ahead.base == bases[nid]:
                counter = counters[nid] = _copy_counter(ahead.counter)
                unsaved[nid] = ahead.unsaved
        # A counter from another read position or ruleset is recomputed; otherwise only newer events count.
        if (
            counter is None
            or counter.from_stream != fingerprint.get(nid, 0)
            or counter.rules_version != version
        ):
            base = unthreaded.get(nid, by_nid[nid].joined_at)
            counter = store.Counter(nid, fingerprint.get(nid, 0), base, version, 0, 0, {})
            counters[nid] = counter
            fresh.append(counter)
        if counter.upto_stream < upto:
            have = loaded.get(nid) if loaded is not None else None
            if have is not None and have[0] <= counter.upto_stream:
                start = counter.upto_stream
                to_count[nid] = [e for e in have[1] if (e.stream_ordering or 0) > start][-MAX_COUNTED_EVENTS:]
            else:
                starts[nid] = counter.upto_stream
    if starts:
        to_count.update(sync_store.get_events_for_counting(starts, upto=upto, limit=MAX_COUNTED_EVENTS))
    changed: dict[int, store.Counter] = {c.room_nid: c for c in fresh}
    with_events = [nid for nid, events in to_count.items() if events]
    if with_events:
        rs = ruleset if ruleset is not None else get_ruleset(user_id=user_id)
        contexts = load_room_contexts(
            user_id=user_id,
            room_nids=with_events,
            state_groups={nid: by_nid[nid].state_group for nid in with_events},
            display_names={nid: by_nid[nid].displayname for nid in with_events}
            if displaynames_known
            else None,
        )
        for nid in with_events:
            _count_events(
                counters[nid],
                to_count[nid],
                _reads_of(nid, unthreaded, main_pos, thread_pos),
                user_id=user_id,
                ignored_users=ignored_users,
                ruleset=rs,
                contexts=contexts,
            )
    # Written: counters that evaluated events or had to read the database for them. A counter
    # whose room the caller showed to be quiet (``loaded``, empty) stays as stored: still valid,
    # and the next count from its position finds the same events.
    for nid in [*with_events, *starts]:
        counters[nid].upto_stream = upto
        changed[nid] = counters[nid]
    for counter in fresh:
        counter.upto_stream = max(counter.upto_stream, upto)
    # Rows written: fresh counts and counts that read events from the database (both cost
    # reads worth keeping), and counters SAVE_COUNTER_EVERY events ahead of their rows. The
    # others move on in this process only (``_counters_ahead``).
    fresh_nids = {c.room_nid for c in fresh}
    to_save: list[store.Counter] = []
    for nid, counter in changed.items():
        pending = unsaved.get(nid, 0) + len(to_count.get(nid, ()))
        if nid in fresh_nids or nid in starts or nid not in bases or pending >= SAVE_COUNTER_EVERY:
            to_save.append(counter)
            _counters_ahead.drop([(user_id, nid)])
            bases[nid], unsaved[nid] = _row_of(counter), 0
        else:
            _counters_ahead.put((user_id, nid), _Ahead(bases[nid], _copy_counter(counter), pending))
            unsaved[nid] = pending
    store.save_unread_counters(user_id=user_id, counters=to_save)
    if kept is not None:
        for nid in nids:
            kept[nid] = KeptCounter(
                _copy_counter(counters[nid]),
                bases[nid],
                unsaved.get(nid, 0),
                _reads_of(nid, unthreaded, main_pos, thread_pos),
            )
    return {nid: _counts_of(counters[nid]) for nid in nids}


def count_onwards(
    *,
    user_id: str,
    room: RoomRef,
    kept: KeptCounter,
    events: Sequence[StoredEvent],
    upto: int,
    ruleset: Mapping[str, Sequence[Mapping[str, Any]]],
    rules_version: int,
    ignored_users: frozenset[str] = frozenset(),
) -> tuple[UnreadCounts, KeptCounter] | None:
    """A room's counts up to ``upto`` from what an earlier count kept, given ``events``: every
    timeline event of the room after the kept counter's position up to ``upto`` (oldest
    first); None if the push rules changed since (count with :func:`get_unread_counts`).

    No database read: the caller vouches that the user's receipts in the room did not
    change since ``kept`` was counted (``dagcore.sync.news``: any change would have come
    through the notifier). The counter is written as :func:`get_unread_counts` writes it:
    every ``SAVE_COUNTER_EVERY`` events, in this process's memory in between.
    """
    counter = _copy_counter(kept.counter)
    if counter.rules_version != rules_version:
        return None
    nid = room.room_nid
    to_count = [e for e in events if (e.stream_ordering or 0) > counter.upto_stream][-MAX_COUNTED_EVENTS:]
    if to_count:
        contexts = load_room_contexts(
            user_id=user_id,
            room_nids=[nid],
            state_groups={nid: room.state_group},
            display_names={nid: room.displayname},
        )
        _count_events(
            counter, to_count, kept.reads, user_id=user_id, ignored_users=ignored_users, ruleset=ruleset,
            contexts=contexts,
        )  # fmt: skip
    counter.upto_stream = max(counter.upto_stream, upto)
    base, pending = kept.base, kept.unsaved + len(to_count)
    if to_count:
        if pending >= SAVE_COUNTER_EVERY:
            store.save_unread_counters(user_id=user_id, counters=[counter])
            _counters_ahead.drop([(user_id, nid)])
            base, pending = _row_of(counter), 0
        else:
            _counters_ahead.put((user_id, nid), _Ahead(base, _copy_counter(counter), pending))
    return _counts_of(counter), KeptCounter(_copy_counter(counter), base, pending, kept.reads)


@dataclass(frozen=True)
class Reads:
    """How far the user read a room: their unthreaded, main timeline and per-thread receipts'
    stream positions (spec "Threading": threaded read receipts)."""

    unthreaded: int = 0
    main: int = 0
    threads: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class KeptCounter:
    """A room's counter as a count left it, with what it read: enough to count the room's next
    events without the database while the receipts and push rules hold (:func:`count_onwards`)."""

    counter: store.Counter
    #: ``(from_stream, rules_version, upto_stream)`` of the counter's row as last read or written.
    base: tuple[int, int, int]
    #: Events counted since that row was written.
    unsaved: int
    reads: Reads


def _row_of(counter: store.Counter) -> tuple[int, int, int]:
    return (counter.from_stream, counter.rules_version, counter.upto_stream)


def _reads_of(
    nid: int, unthreaded: Mapping[int, int], main: Mapping[int, int], threads: Mapping[int, Mapping[str, int]]
) -> Reads:
    return Reads(unthreaded.get(nid, 0), main.get(nid, 0), dict(threads.get(nid, {})))


def _count_events(
    counter: store.Counter,
    events: Sequence[StoredEvent],
    reads: Reads,
    *,
    user_id: str,
    ignored_users: frozenset[str],
    ruleset: Mapping[str, Sequence[Mapping[str, Any]]],
    contexts: RoomContexts,
) -> None:
    """Move ``counter`` on by ``events`` (newer than its position, oldest first)."""
    nid = counter.room_nid
    plain_read = max(reads.unthreaded, reads.main)
    for stored in events:
        pos = stored.stream_ordering or 0
        root = _thread_root(stored)
        if stored.event.sender == user_id:
            # Spec "Marking notifications as read": sending an event reads up to it
            # (an event in a thread reads that thread).
            counter.notification_count = counter.highlight_count = 0
            counter.threads[root] = [0, 0]
            continue
        if stored.event.sender in ignored_users:
            continue
        result = rules.evaluate(ruleset, stored.event.pdu, contexts.context_for(nid, stored.event.sender))
        if not result.notify:
            continue
        if pos > plain_read:
            counter.notification_count += 1
            counter.highlight_count += int(result.highlight)
        read = max(reads.unthreaded, reads.main if root == "main" else reads.threads.get(root, 0))
        if pos > read:
            n, h = counter.threads.get(root, [0, 0])
            counter.threads[root] = [n + 1, h + int(result.highlight)]


def _counts_of(c: store.Counter) -> UnreadCounts:
    main = c.threads.get("main", [0, 0])
    return UnreadCounts(
        notification_count=c.notification_count,
        highlight_count=c.highlight_count,
        main=(main[0], main[1]),
        threads={root: (v[0], v[1]) for root, v in c.threads.items() if root != "main" and v[0] > 0},
    )


# --------------------------------------------------------------------------- /notifications


@dataclass(frozen=True)
class NotificationItem:
    stored: StoredEvent
    room_id: str
    actions: tuple[Any, ...]
    read: bool


def get_notifications(
    *,
    user_id: str,
    from_token: str | None,
    limit: int,
    only_highlight: bool,
    ignored_users: frozenset[str] = frozenset(),
) -> tuple[list[NotificationItem], str | None]:
    """Events of the user's joined rooms that notified them, newest first, and the next token.

    Evaluated on demand (there is no per-recipient record made at send time);
    one request examines at most ``MAX_NOTIFICATION_SCAN`` events.
    """
    before: int | None = None
    if from_token is not None:
        before = ascii_uint(from_token)
        if before is None:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid from token")
    memberships = [m for m in sync_store.get_user_memberships(user_id) if m.membership == "join"]
    if not memberships:
        return [], None
    joined_at = {m.room_nid: m.stream_ordering for m in memberships}
    room_id_of = {m.room_nid: m.room_id for m in memberships}
    nids = list(joined_at)
    read_pos = receipt_store.get_read_positions(user_id=user_id, room_nids=nids)
    ruleset = get_ruleset(user_id=user_id)
    contexts = load_room_contexts(user_id=user_id, room_nids=nids)
    found: list[NotificationItem] = []
    scanned = 0
    while scanned < MAX_NOTIFICATION_SCAN:
        batch = sync_store.get_events_before(nids, before=before, limit=100, exclude_sender=user_id)
        if not batch:
            return found, None
        for stored in batch:
            scanned += 1
            before = stored.stream_ordering
            nid = stored.room_nid
            if (stored.stream_ordering or 0) <= joined_at[nid] or stored.event.sender in ignored_users:
                continue
            result = rules.evaluate(ruleset, stored.event.pdu, contexts.context_for(nid, stored.event.sender))
            if not result.notify or (only_highlight and not result.highlight):
                continue
            found.append(
                NotificationItem(
                    stored=stored,
                    room_id=room_id_of[nid],
                    actions=result.actions,
                    read=(stored.stream_ordering or 0) <= read_pos.get(nid, 0),
                )
            )
            if len(found) >= limit:
                return found, str(before)
        if len(batch) < 100:
            return found, None
    return found, str(before) if before is not None else None

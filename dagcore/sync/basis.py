"""What an answer's build read that the sync following it can start from, and what the notifier
saw since (``dagcore.sync.news``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dagcore.actions.push_rules import KeptCounter
from dagcore.store.sync import MembershipInfo
from dagcore.sync.context import PushRules, SyncContext
from dagcore.sync.tokens import SyncToken

#: A basis is kept with each remembered answer (``tribune.sync.answered``, one per long-polling
#: client), a few hundred bytes per joined room: users in more rooms than this keep none.
MAX_ROOMS = 1_000


@dataclass(frozen=True)
class SyncBasis:
    """What an answer's build read that the sync following it needs again (``dagcore.sync.news``)."""

    #: The answer's ``next_batch``.
    now: SyncToken
    #: The joined rooms in the filter's view, by room ID, as of ``now``.
    joined: Mapping[str, MembershipInfo]
    #: The rooms the long-poll watches.
    watch: frozenset[str]
    ignored: frozenset[str]
    push_rules: PushRules
    e2e_counts: tuple[dict[str, int], list[str]] | None
    #: Per room nid, the unread counter as of ``now`` for rooms a count went through (a room
    #: without events since its counter's position counts as of ``now`` too).
    unread: Mapping[int, KeptCounter] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        ctx: SyncContext,
        *,
        now: SyncToken,
        memberships: Iterable[MembershipInfo],
        watch: frozenset[str],
        push_rules: PushRules,
        e2e_counts: tuple[dict[str, int], list[str]] | None,
        unread: Mapping[int, KeptCounter] | None = None,
    ) -> SyncBasis | None:
        """None for a user in more than ``MAX_ROOMS`` rooms (their syncs build as before)."""
        joined = {m.room_id: m for m in memberships if m.membership == "join"}
        if len(joined) > MAX_ROOMS:
            return None
        return cls(
            now=now,
            joined=joined,
            watch=watch,
            ignored=ctx.ignored,
            push_rules=push_rules,
            e2e_counts=e2e_counts,
            unread=dict(unread or {}),
        )


@dataclass(frozen=True)
class TimelineNews:
    """What the notifier saw since an answer (``tribune.sync.notifier``): only new timeline
    events concern the sync, in ``rooms``; every event up to stream position ``upto`` was
    announced, so no other room of the sync has any after the answer."""

    rooms: frozenset[str]
    upto: int

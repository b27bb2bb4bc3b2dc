"""The inputs every section of a sync shares: who asks, from which position, up to which.

A :class:`SyncContext` is fixed before any section runs (frozen); a section reads only
it and what it is handed, so a section can run alone (tests, sliding sync) and two
syncs with equal inputs give equal answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from dagcore.actions import push_rules as push_actions
from dagcore.actions.filters import SyncFilter
from dagcore.store import account_data as account_data_store
from dagcore.store.sync import SyncStart, TimelineFilter
from dagcore.sync.tokens import SyncToken

IGNORED_USERS_TYPE = "m.ignored_user_list"
#: Global account data every sync reads with the stream positions (``SyncStart.account_data``).
START_ACCOUNT_DATA_TYPES = (IGNORED_USERS_TYPE, account_data_store.PUSH_RULES_TYPE)


@dataclass(frozen=True)
class SyncRequest:
    """What a client asks for (``GET /sync``'s parameters, authenticated)."""

    user_id: str
    device_id: str | None
    #: Transaction-ID scope of the requesting device (``unsigned.transaction_id``).
    device_key: str
    since: SyncToken | None
    full_state: bool
    filter: SyncFilter
    #: The presence this sync sets (``set_presence``, see ``presence.sync_presence_wanted``);
    #: None: the sync leaves presence alone.
    presence: str | None = None


@dataclass(frozen=True)
class SyncContext:
    """One sync's fixed inputs."""

    user_id: str
    device_id: str | None
    device_key: str
    #: The client's token, clamped to ``now``; None for an initial sync.
    since: SyncToken | None
    #: The streams' positions this sync answers up to.
    now: SyncToken
    full_state: bool
    filter: SyncFilter
    #: Wall clock (ms): events' ``unsigned.age``, typing expiry, presence's ``last_active_ago``.
    now_ms: int
    #: Users this user ignores (spec "Ignoring Users").
    ignored: frozenset[str] = frozenset()

    @property
    def initial(self) -> bool:
        return self.since is None

    def moved(self, stream: str) -> bool:
        """Whether ``stream`` has anything after ``since`` (always, for an initial sync)."""
        return self.since is None or getattr(self.since, stream) < getattr(self.now, stream)

    @cached_property
    def timeline_filter(self) -> TimelineFilter:
        """The SQL part of the timeline filter, with the ignored users' events."""
        return TimelineFilter(events=self.filter.room.timeline.sql(), ignored_senders=self.ignored)


@dataclass(frozen=True)
class PushRules:
    """The user's push rules as one sync sees them. Their version and the ruleset's cache
    key are read with the stream positions; the ruleset itself is built at most once, by
    the first section that needs it (unread counts, the ``m.push_rules`` account data)."""

    user_id: str
    version: int
    #: ``(row id, version)`` of the ``m.push_rules`` marker (``push_rules.get_ruleset``).
    cache_key: tuple[int, int]

    @cached_property
    def ruleset(self) -> dict[str, list[dict[str, Any]]]:
        return push_actions.get_ruleset(user_id=self.user_id, cache_key=self.cache_key)


def ignored_users(start_account_data: Mapping[str, tuple[Any, int, int]]) -> frozenset[str]:
    """The ``m.ignored_user_list`` of ``SyncStart.account_data``: their events are not shown,
    except state events."""
    content = start_account_data.get(IGNORED_USERS_TYPE, (None, 0, 0))[0]
    users = content.get("ignored_users") if isinstance(content, dict) else None
    if not isinstance(users, dict):
        return frozenset()
    return frozenset(u for u in users if isinstance(u, str))


def push_rules_of(user_id: str, start_account_data: Mapping[str, tuple[Any, int, int]]) -> PushRules:
    """The push rules' version and cache key from the ``m.push_rules`` marker's stream position and row."""
    _, version, row_id = start_account_data.get(account_data_store.PUSH_RULES_TYPE, (None, 0, 0))
    return PushRules(user_id=user_id, version=version, cache_key=(row_id, version))


def make_context(*, request: SyncRequest, start: SyncStart, now_ms: int) -> SyncContext:
    now = SyncToken.from_positions(start.positions)
    return SyncContext(
        user_id=request.user_id,
        device_id=request.device_id,
        device_key=request.device_key,
        since=request.since.clamped_to(now) if request.since is not None else None,
        now=now,
        full_state=request.full_state,
        filter=request.filter,
        now_ms=now_ms,
        ignored=ignored_users(start.account_data),
    )

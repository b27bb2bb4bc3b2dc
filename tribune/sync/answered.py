"""What this process last answered each long-poll, so the request that follows it can skip a
build that would find nothing (issue #12: "answer a wake from the change").

A client that got a ``/sync`` answer comes straight back with its ``next_batch`` as
``since``. Built again, that request almost always finds nothing new and waits: its first
build (the streams' positions, memberships, account data, key counts, presence — one round
trip and a few hundred microseconds of Python) is wasted. This module remembers, per
(access token, ``next_batch``, filter, ``set_presence``), who was answered, which rooms the
answer watched and the notifier's generation before it was built. While the notifier has
seen nothing for that user or those rooms since (``WaiterRegistry.missed_since``: every
committed change of any process passes through it, DESIGN.md §5), a build from that token
would find exactly what the answer held, so the request only authenticates and waits
(``tribune.views.sync._first_pass``).

Not remembered: answers that stopped short of the streams' positions (a to-device backlog
delivered over several syncs), whose next build has news without any change. Presence: a
sync that sets it refreshes ``last_sync_ts`` at most every ``SYNC_TOUCH_MS``; a remembered
answer stands in for that check for half that long, then a full build runs again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from dagcore.actions.presence import SYNC_TOUCH_MS, sync_presence_wanted
from dagcore.caching import BoundedCache
from dagcore.clock import now_ms
from dagcore.sync import SyncRequest, SyncResult
from dagcore.sync.basis import SyncBasis
from tribune.inputs import SyncQuery

#: Answers remembered: one per long-polling client (an answer's entry goes when the request
#: following it is answered); beyond that the least recently used go, and build as before.
MAX_ANSWERS = 10_000
#: How long a remembered answer stands in for the presence check of a sync that sets presence.
PRESENCE_FRESH_MS = SYNC_TOUCH_MS // 2

Key = tuple[bytes, str, str | None, str | None]


@dataclass(frozen=True)
class Answered:
    user_id: str
    device_id: str | None
    #: The rooms the answer's long-poll watched.
    room_ids: frozenset[str]
    #: ``WaiterRegistry.generation`` read before the answer was built.
    generation: int
    #: When a build last checked (and if need be wrote) the presence this client sets;
    #: None when its syncs set none.
    presence_checked_ms: int | None
    #: What the answer's build read, for a follower woken by new timeline events only
    #: (``dagcore.sync.news``).
    basis: SyncBasis | None = None


_answers: BoundedCache[Key, Answered] = BoundedCache("sync.answered", maxsize=MAX_ANSWERS)


def _key(access_token: str, next_batch: str, query: SyncQuery) -> Key:
    # A digest: the token itself is not kept in memory longer than its request.
    return (hashlib.sha256(access_token.encode()).digest(), next_batch, query.filter, query.set_presence)


def presence_checked_at(query: SyncQuery, started_ms: int) -> int | None:
    """What a build that started at ``started_ms`` did for presence (see :class:`Answered`)."""
    return started_ms if sync_presence_wanted(query.set_presence) is not None else None


def remember(
    access_token: str | None,
    query: SyncQuery,
    params: SyncRequest,
    result: SyncResult,
    *,
    generation: int,
    presence_checked_ms: int | None,
) -> None:
    """Remember the answer ``result`` (built after ``generation``) for the long-poll to follow."""
    if not access_token:
        return
    if query.since is not None:
        # The answer it followed is not asked for again (bar a retry, which then builds): one
        # entry per long-polling client.
        _answers.drop([_key(access_token, str(query.since), query)])
    if not result.complete:
        return
    _answers.put(
        _key(access_token, str(result.next_batch), query),
        Answered(
            user_id=params.user_id,
            device_id=params.device_id,
            room_ids=result.room_ids,
            generation=generation,
            presence_checked_ms=presence_checked_ms,
            basis=result.basis,
        ),
    )


def followed(access_token: str | None, query: SyncQuery) -> Answered | None:
    """The remembered answer this long-poll follows, if it may stand in for the presence
    check; None: build as usual. Whether anything changed for it since is the first pass's
    question (``WaiterRegistry.missed_since``), asked after it authenticated."""
    if query.since is None or query.full_state or query.timeout_ms == 0 or not access_token:
        return None
    known = _answers.get(_key(access_token, str(query.since), query))
    if known is None:
        return None
    if sync_presence_wanted(query.set_presence) is not None and (
        known.presence_checked_ms is None or now_ms() - known.presence_checked_ms >= PRESENCE_FRESH_MS
    ):
        return None
    return known

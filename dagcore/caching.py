"""Bounded in-process caches: one kind for the whole server, one registry, one invalidation path.

Every process keeps its own copies; what must be shared lives in PostgreSQL or Redis
(DESIGN.md §1). So a cached value must never be made stale by another process, and the
rule every cache here follows is: **its key names its data for good.** The key is either
an immutable row (a state group, a room's version, events in a closed stream range) or a
version that every change moves and that the caller has just read from the database (a
stream position, a room's current state group, the row and position of the user's
``m.push_rules`` marker). A change made by any process then makes readers ask for a new
key; nobody needs telling, and old entries age out of the LRU. Every cache in the server
today is of that kind:

========================== ============================================================
cache                      keyed by
========================== ============================================================
``state.group_chains``     state group ID (immutable)
``state.full_state``       state group ID (immutable)
``sync.membership_counts`` (room, current state group)
``sync.room_state``        (room, current state group, keys)
``sync.recent_events``     (room, stream range): committed ranges never change
``timeline.relations``     (parent events, stream position)
``push_rules.rulesets``    (user, ``m.push_rules`` marker row and stream position)
``send_event.room_versions`` room ID (a room's version never changes)
``state.current_auth_entries`` room; used only for the current state group the caller read
                           (a room's older groups are never asked for again)
``filters.sync_filters``   an inline filter's text; (user, filter ID): stored filters never change
``push_rules.counters_ahead`` (user, room); used only while the counter's row still holds
                           the values it was computed from (read in the same sync)
``sync.answered``          (access token digest, ``next_batch``, filter, ``set_presence``);
                           used only while the process's notifier has seen no change for
                           that user or their rooms since the answer (``tribune.sync.answered``)
========================== ============================================================

For data that cannot be keyed that way, ``dagcore.cache_invalidation`` is the one path
to drop entries in every process (apart from this module, which the store layer imports:
it rides on the notifier, which must not be reachable from the store).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from typing import Any, Generic, TypeVar

from cachetools import LRUCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A thread-safe least-recently-used map of at most ``maxsize`` entries.

    ``None`` is never stored (``get`` answers ``None`` for a miss). Values are shared by
    every caller: callers must not modify what they get (copy if they need to).
    """

    def __init__(self, name: str, *, maxsize: int) -> None:
        if name in _registry:
            raise ValueError(f"a cache named {name!r} exists already")
        self.name = name
        self._data: LRUCache[K, V] = LRUCache(maxsize=maxsize)
        self._lock = threading.Lock()
        #: Look-ups answered from the cache, and not (``dagma_cache_*`` metrics).
        self.hits = 0
        self.misses = 0
        _registry[name] = self

    @property
    def maxsize(self) -> int:
        return int(self._data.maxsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value

    def drop(self, keys: Iterable[K]) -> None:
        """Forget ``keys`` in this process only (see :func:`invalidate_everywhere`)."""
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_registry: dict[str, BoundedCache[Any, Any]] = {}


def registered_caches() -> dict[str, BoundedCache[Any, Any]]:
    return dict(_registry)


def get_cache(name: str) -> BoundedCache[Any, Any] | None:
    return _registry.get(name)


def clear_process_caches() -> None:
    """Forget every in-process cache (tests: a rolled-back test's IDs may be handed out again)."""
    for cache in list(_registry.values()):
        cache.clear()

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
========================== ============================================================

For data that cannot be keyed that way, :func:`invalidate_everywhere` is the one path to
drop entries in every process: it rides on the after-commit notifier and the broadcast
that already wakes ``/sync`` (``dagcore.notifier`` → ``dagcore.broadcast``), so it needs
no channel of its own. Receivers hand each broadcast message to
:func:`apply_broadcast_invalidations`.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from typing import Any, Generic, TypeVar

from cachetools import LRUCache

from dagcore.notifier import Change, add_listener, notify

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: The notifier stream of invalidations, and the ``Change.extra`` / broadcast message key
#: holding ``{cache name: [key, ...]}``.
INVALIDATION_STREAM = "caches"
INVALIDATIONS = "invalidate"


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
        _registry[name] = self

    @property
    def maxsize(self) -> int:
        return int(self._data.maxsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._data.get(key)

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


def get_cache(name: str) -> BoundedCache[Any, Any] | None:
    return _registry.get(name)


def clear_process_caches() -> None:
    """Forget every in-process cache (tests: a rolled-back test's IDs may be handed out again)."""
    for cache in list(_registry.values()):
        cache.clear()


# --------------------------------------------------------------------------- invalidation


def invalidate_everywhere(cache: BoundedCache[K, Any], keys: Iterable[K]) -> None:
    """Once the current transaction commits, drop ``keys`` of ``cache`` in every process.

    Keys travel in the broadcast message, so they must be strings, integers or (nested)
    tuples of those. Without a transaction the drop happens at once.
    """
    wanted = [_wire_key(k) for k in keys]
    if wanted:
        notify(Change(stream=INVALIDATION_STREAM, position=0, extra={INVALIDATIONS: {cache.name: wanted}}))


def _wire_key(key: Any) -> Any:
    if isinstance(key, tuple):
        return [_wire_key(k) for k in key]
    if isinstance(key, (str, int)):
        return key
    raise TypeError(f"cache keys sent to other processes must be str, int or tuples: {key!r}")


def _local_key(value: Any) -> Any:
    """A key as it was before the wire turned its tuples into lists."""
    return tuple(_local_key(v) for v in value) if isinstance(value, list) else value


def _apply(invalidations: object) -> None:
    if not isinstance(invalidations, dict):
        return
    for name, keys in invalidations.items():
        cache = _registry.get(name)
        if cache is not None and isinstance(keys, list):
            cache.drop(_local_key(k) for k in keys)


def _on_change(change: Change) -> None:
    """``dagcore.notifier`` listener: this process drops its entries after commit."""
    if change.stream == INVALIDATION_STREAM:
        _apply(change.extra.get(INVALIDATIONS))


def broadcast_invalidations(change: Change) -> dict[str, list[Any]] | None:
    """What ``dagcore.broadcast`` puts in its message for ``change`` (None: nothing)."""
    if change.stream != INVALIDATION_STREAM:
        return None
    found = change.extra.get(INVALIDATIONS)
    return found if isinstance(found, dict) else None


def apply_broadcast_invalidations(message: dict[str, Any]) -> None:
    """Drop what another process invalidated (a message of ``dagcore.broadcast``)."""
    _apply(message.get(INVALIDATIONS))


add_listener(_on_change)

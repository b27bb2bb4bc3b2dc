"""Dropping cache entries in every process: the one invalidation path (see ``dagcore.caching``).

:func:`invalidate_everywhere` rides on the after-commit notifier and the broadcast that
already wakes ``/sync`` (``dagcore.notifier`` → ``dagcore.broadcast``), so it needs no
channel of its own. This process drops its entries through a notifier listener; receivers
of the broadcast (Tribune's listener) hand each message to :func:`apply_broadcast_invalidations`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, TypeVar

from dagcore.caching import BoundedCache, get_cache
from dagcore.notifier import Change, add_listener, notify

K = TypeVar("K", bound=Hashable)

#: The notifier stream of invalidations, and the ``Change.extra`` / broadcast message key
#: holding ``{cache name: [key, ...]}``.
INVALIDATION_STREAM = "caches"
INVALIDATIONS = "invalidate"


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
        cache = get_cache(name)
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

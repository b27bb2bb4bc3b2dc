"""The one in-process cache of the server (``dagcore.caching``): bounded, registered, and
invalidated in every process through the notifier and its broadcast."""

from __future__ import annotations

import json
import secrets

import pytest

from dagcore.broadcast import change_message
from dagcore.cache_invalidation import apply_broadcast_invalidations, invalidate_everywhere
from dagcore.caching import BoundedCache, clear_process_caches
from dagcore.notifier import Change, add_listener, remove_listener

pytestmark = pytest.mark.sqlite


def _cache(maxsize: int = 10) -> BoundedCache[object, str]:
    return BoundedCache(f"test.{secrets.token_hex(4)}", maxsize=maxsize)


def test_the_least_recently_used_entry_goes_first_when_the_cache_is_full() -> None:
    cache = _cache(maxsize=2)
    cache.put("a", "1")
    cache.put("b", "2")
    assert cache.get("a") == "1"  # "a" is now the more recently used
    cache.put("c", "3")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("1", None, "3")
    assert len(cache) == 2 == cache.maxsize


def test_clearing_the_process_caches_clears_every_cache() -> None:
    first, second = _cache(), _cache()
    first.put(1, "x")
    second.put(2, "y")
    clear_process_caches()
    assert first.get(1) is None and second.get(2) is None


def test_two_caches_cannot_share_a_name() -> None:
    cache = _cache()
    with pytest.raises(ValueError, match="exists already"):
        BoundedCache(cache.name, maxsize=1)


@pytest.mark.django_db
def test_an_invalidation_drops_the_entries_here_after_commit_and_in_the_other_processes(
    django_capture_on_commit_callbacks,
) -> None:
    cache = _cache()
    cache.put(("@alice:x", 1), "old")
    cache.put(("@bob:x", 1), "kept")
    published: list[Change] = []
    add_listener(published.append)  # what the broadcast publisher of this process is given
    try:
        with django_capture_on_commit_callbacks(execute=True):
            invalidate_everywhere(cache, [("@alice:x", 1)])
            assert cache.get(("@alice:x", 1)) == "old"  # not before the change commits
    finally:
        remove_listener(published.append)
    assert cache.get(("@alice:x", 1)) is None and cache.get(("@bob:x", 1)) == "kept"

    # Another process holding the entry receives the message through the channel layer
    # (serialised on the way: tuples arrive as lists).
    (change,) = published
    message = json.loads(json.dumps(change_message(change, origin="elsewhere")))
    cache.put(("@alice:x", 1), "old")
    apply_broadcast_invalidations(message)
    assert cache.get(("@alice:x", 1)) is None and cache.get(("@bob:x", 1)) == "kept"
    # Ordinary changes carry no invalidations.
    apply_broadcast_invalidations(change_message(Change(stream="events", position=3), origin="x"))
    assert cache.get(("@bob:x", 1)) == "kept"


def test_only_keys_that_survive_the_wire_can_be_invalidated_everywhere() -> None:
    with pytest.raises(TypeError, match="str, int or tuples"):
        invalidate_everywhere(_cache(), [frozenset({"a"})])

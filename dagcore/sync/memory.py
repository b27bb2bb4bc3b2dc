"""What this process remembers between one device's syncs (never needed for correctness:
a device served by another process, or after a restart, is just sent a little more).

Both are ``dagcore.caching`` caches, so they are bounded and cleared with the others."""

from __future__ import annotations

from threading import Lock

from dagcore.caching import BoundedCache


class SentMembers:
    """Which member events this device was sent, per room (spec: lazy-loading avoids
    "redundant" members). Per process: a device served by another process just
    receives some members twice, which the spec allows."""

    def __init__(self, *, maxsize: int = 20_000) -> None:
        self._cache: BoundedCache[tuple[str, str, int], dict[str, int]] = BoundedCache(
            "sync.sent_members", maxsize=maxsize
        )
        # put() reads, merges and writes: one device's two concurrent syncs must not lose a merge.
        self._merge_lock = Lock()

    def get(self, key: tuple[str, str, int]) -> dict[str, int]:
        value = self._cache.get(key)
        return dict(value) if value is not None else {}

    def put(self, key: tuple[str, str, int], value: dict[str, int], *, replace: bool) -> None:
        with self._merge_lock:
            current = {} if replace else dict(self._cache.get(key) or {})
            current.update(value)
            self._cache.put(key, current)


#: ``(user, device key, room nid) -> {member: event nid}`` (``room_state``).
sent_members = SentMembers()
#: ``(user, device) -> to-device position whose messages this process already deleted`` (``to_device``).
acknowledged_to_device: BoundedCache[tuple[str, str], int] = BoundedCache(
    "sync.acknowledged_to_device", maxsize=50_000
)

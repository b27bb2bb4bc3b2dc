"""What this process remembers between one device's syncs (never needed for correctness:
a device served by another process, or after a restart, is just sent a little more)."""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock


class SentMembers:
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


class Acknowledged:
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


#: ``(user, device key, room nid) -> {member: event nid}`` (``room_state``).
sent_members = SentMembers()
#: ``(user, device) -> to-device position`` (``to_device``).
acknowledged_to_device = Acknowledged()

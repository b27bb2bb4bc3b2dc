"""Sync and room pagination tokens (opaque to clients, strictly parsed here).

* Sync tokens ``s<events>_<to_device>_<account_data>_<receipts>_<typing>_<device_lists>_<presence>``
  carry a position for each stream (DESIGN.md §5). ``/messages`` accepts them as
  ``from``/``to`` too (clients pass ``next_batch`` / ``prev_batch``).
* Room tokens ``t<depth>_<stream>`` are positions in one room's topological order
  (depth, then stream ordering), used by ``/messages`` and ``/context``; a backfilled
  event's stream ordering is negative (``dagcore.actions.backfill``), so may be the stream part.

Garbage, negative or huge values are refused with 400 ``M_INVALID_PARAM``, never a 500.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from dagcore.http.errors import MatrixError
from dagcore.store.streams import STREAMS

MAX_POSITION = 2**62
# re.ASCII: \d must not take other scripts' digits (int() would, silently).
_SYNC_RE = re.compile(rf"^s(\d{{1,19}}(?:_\d{{1,19}}){{0,{len(STREAMS) - 1}}})$", re.ASCII)
_ROOM_RE = re.compile(r"^t(-?\d{1,19})_(-?\d{1,19})$", re.ASCII)


def _bad(kind: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", f"Invalid {kind} token")


@dataclass(frozen=True)
class SyncToken:
    events: int = 0
    to_device: int = 0
    account_data: int = 0
    receipts: int = 0
    typing: int = 0
    device_lists: int = 0
    presence: int = 0

    def __str__(self) -> str:
        return "s" + "_".join(str(getattr(self, s)) for s in STREAMS)

    @classmethod
    def parse(cls, value: str) -> SyncToken:
        m = _SYNC_RE.match(value or "")
        if not m:
            raise _bad("sync")
        parts = [int(p) for p in m.group(1).split("_")]
        if any(p > MAX_POSITION for p in parts):
            raise _bad("sync")
        parts += [0] * (len(STREAMS) - len(parts))
        return cls(*parts)

    @classmethod
    def from_positions(cls, positions: dict[str, int]) -> SyncToken:
        return cls(**{s: positions.get(s, 0) for s in STREAMS})

    def copy_with(self, **changes: int) -> SyncToken:
        return replace(self, **changes)

    def clamped_to(self, current: SyncToken) -> SyncToken:
        """A token from "the future" (e.g. a restored database) counts as ``current``."""
        return SyncToken(**{s: min(getattr(self, s), getattr(current, s)) for s in STREAMS})


@dataclass(frozen=True)
class RoomToken:
    depth: int
    stream: int

    def __str__(self) -> str:
        return f"t{self.depth}_{self.stream}"

    @classmethod
    def parse(cls, value: str) -> RoomToken:
        m = _ROOM_RE.match(value or "")
        if not m:
            raise _bad("pagination")
        depth, stream = int(m.group(1)), int(m.group(2))
        if abs(depth) > MAX_POSITION or abs(stream) > MAX_POSITION:
            raise _bad("pagination")
        return cls(depth, stream)


def parse_pagination_token(value: str) -> SyncToken | RoomToken:
    """``/messages`` ``from``/``to``: a room token or a sync token (clients pass ``prev_batch``
    and ``next_batch`` of a sync as well as ``start``/``end`` of an earlier page)."""
    if value.startswith("t"):
        return RoomToken.parse(value)
    return SyncToken.parse(value)

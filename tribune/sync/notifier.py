"""Waking ``/sync`` long-polls, in this process and in every other (DESIGN.md §3 step 5, §5).

After a commit, ``dagcore.notifier`` hands each change to :func:`on_change`.
It wakes this process's waiters at once and publishes the change on the
channel layer (Redis pub/sub in production); every Tribune process runs
:func:`_listen`, which wakes *its* waiters for the users and rooms the change
concerns. A waiter is an ``asyncio.Event`` per waiting request: a waiting
``/sync`` holds no thread and no database connection.

Missed wake-ups: a ``/sync`` records the registry's generation before it reads
the streams, and after registering its waiter checks whether a relevant change
arrived in between (:meth:`WaiterRegistry.missed_since`).

The same loop runs the housekeeping that needs a clock: clearing typing notices
when they run out and marking users offline who stopped syncing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async

from dagcore.actions.presence import expire_presence, presence_enabled
from dagcore.actions.typing import expire_typing_notices, get_next_typing_expiry
from dagcore.broadcast import GROUP, MESSAGE_TYPE, change_message, channel_layer, publish_from_thread
from dagcore.cache_invalidation import apply_broadcast_invalidations
from dagcore.clock import now_ms
from dagcore.notifier import Change, after_response
from dagcore.store.transaction import release_all_connections
from dagcore.sync.basis import TimelineNews

logger = logging.getLogger("tribune.sync")

#: Identifies this process's own messages, which its listener skips (they were delivered locally).
ORIGIN = secrets.token_hex(8)
#: Housekeeping period (typing sweep fallback, presence timeouts).
SWEEP_SECONDS = 10.0
#: Changes remembered for missed-wake-up checks.
RECENT_CHANGES = 4096


# --------------------------------------------------------------------------- waiters


@dataclass(eq=False)
class Waiter:
    user_id: str
    room_ids: frozenset[str]
    event: asyncio.Event = field(default_factory=asyncio.Event)


class WaiterRegistry:
    """The waiting requests of this process, by user and by room. Used on the event loop,
    except :meth:`missed_since` and :attr:`generation`, which a building thread may read."""

    def __init__(self) -> None:
        self.by_user: dict[str, set[Waiter]] = defaultdict(set)
        self.by_room: dict[str, set[Waiter]] = defaultdict(set)
        self.generation = 0
        #: ``(generation, users, rooms, stream, position)`` of the latest changes. Users and
        #: rooms as tuples: a change names one or two, and 4,096 small frozensets took 1.7 MiB.
        self.recent: deque[tuple[int, tuple[str, ...], tuple[str, ...], str | None, int]] = deque(
            maxlen=RECENT_CHANGES
        )
        #: Guards ``generation`` and ``recent`` against a reader in another thread.
        self._recent_lock = threading.Lock()

    def register(self, user_id: str, room_ids: Iterable[str]) -> Waiter:
        waiter = Waiter(user_id, frozenset(room_ids))
        self.by_user[user_id].add(waiter)
        for room_id in waiter.room_ids:
            self.by_room[room_id].add(waiter)
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        self._discard(self.by_user, waiter.user_id, waiter)
        for room_id in waiter.room_ids:
            self._discard(self.by_room, room_id, waiter)

    def count_waiters(self, user_id: str) -> int:
        """How many requests of this user wait here (test hooks: a test waits for its long-poll
        to be registered before it makes the change that must wake it)."""
        return len(self.by_user.get(user_id, ()))

    @staticmethod
    def _discard(index: dict[str, set[Waiter]], key: str, waiter: Waiter) -> None:
        waiters = index.get(key)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del index[key]

    def dispatch(
        self, user_ids: Iterable[str], room_ids: Iterable[str], stream: str | None = None, position: int = 0
    ) -> int:
        """Wake the waiters of these users and rooms; returns how many were woken. ``stream``
        and ``position``: the change's (``Change.stream``, ``Change.position``), for
        :meth:`timeline_news`; None: unknown."""
        users, rooms = tuple(user_ids), tuple(room_ids)
        with self._recent_lock:
            self.generation += 1
            self.recent.append((self.generation, users, rooms, stream, position))
        woken: set[Waiter] = set()
        for user_id in users:
            woken |= self.by_user.get(user_id, set())
        for room_id in rooms:
            woken |= self.by_room.get(room_id, set())
        for waiter in woken:
            waiter.event.set()
        return len(woken)

    def missed_since(self, generation: int, user_id: str, room_ids: frozenset[str]) -> bool:
        """Did a change for this user or these rooms arrive after ``generation``?"""
        with self._recent_lock:
            if generation == self.generation:
                return False
            oldest = self.recent[0][0] if self.recent else self.generation + 1
            if generation + 1 < oldest:
                return True  # too long ago to tell: assume so (a spurious rebuild is harmless)
            # Newest first: a change worth a rebuild is most often a recent one.
            for g, users, rooms, _, _ in reversed(self.recent):
                if g <= generation:
                    return False
                if user_id in users or not room_ids.isdisjoint(rooms):
                    return True
            return False

    def timeline_news(
        self, generation: int, user_id: str, room_ids: frozenset[str], after: int
    ) -> tuple[int, TimelineNews | None]:
        """``(the generation now, what concerns this sync since generation ``generation``)``:
        :class:`TimelineNews` when that is only new events of the events stream after
        position ``after`` in ``room_ids`` and every event position from ``after`` up to its
        ``upto`` was announced here (so none of another of these rooms is missing); None
        otherwise (anything else concerns the user or these rooms, or cannot be told).

        Events are announced after their commit, and commits take their positions in order
        (``dagcore.store.streams.advance_stream``), so an event after ``after`` was announced
        after the answer that read ``after`` and its generation is newer than ``generation``.
        """
        with self._recent_lock:
            now = self.generation
            if generation == now or not self.recent or generation + 1 < self.recent[0][0]:
                return now, None
            seen: set[int] = set()
            rooms_with_news: set[str] = set()
            top = after
            for g, users, rooms, stream, position in reversed(self.recent):
                if g <= generation:
                    break
                is_event = stream == "events"
                if is_event:
                    seen.add(position)
                if user_id not in users and room_ids.isdisjoint(rooms):
                    continue
                if not is_event or user_id in users:
                    return now, None
                if position > after:
                    rooms_with_news.update(room_ids.intersection(rooms))
                    top = max(top, position)
        if not rooms_with_news or any(p not in seen for p in range(after + 1, top + 1)):
            return now, None
        while top + 1 in seen:
            top += 1
        return now, TimelineNews(frozenset(rooms_with_news), top)


registry = WaiterRegistry()


# --------------------------------------------------------------------------- process state


class _State:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.typing_timer: asyncio.TimerHandle | None = None
        self.typing_due: int | None = None


_state = _State()


def _channel_layer() -> Any:
    return channel_layer()


def _message(change: Change) -> dict[str, Any]:
    return change_message(change, origin=ORIGIN)


# --------------------------------------------------------------------------- after-commit listener


def on_change(change: Change) -> None:
    """``dagcore.notifier`` listener: runs after commit, in the committing thread."""
    message = _message(change)
    loop = _state.loop
    if loop is not None and not loop.is_closed():
        # After the response of the request that made the change (``after_response``).
        after_response(lambda: _call_soon(loop, message))
        expires = change.extra.get("typing_expires_ts")
        if isinstance(expires, int):
            loop.call_soon_threadsafe(_schedule_typing_sweep, expires)
        return
    # No loop of ours here (a management command, a worker): publish and wait for it.
    publish_from_thread(change, origin=ORIGIN)


def _call_soon(loop: asyncio.AbstractEventLoop, message: dict[str, Any]) -> None:
    loop.call_soon_threadsafe(_deliver, message)


def _wake(message: dict[str, Any]) -> None:
    """Wake this process's waiters concerned by a change message (``dagcore.broadcast``),
    ours or another process's."""
    registry.dispatch(
        message.get("users") or (),
        message.get("rooms") or (),
        message.get("stream"),
        message.get("position") or 0,
    )


def _deliver(message: dict[str, Any]) -> None:
    """On the loop: wake local waiters, then tell the other processes."""
    _wake(message)
    layer = _channel_layer()
    if layer is not None:
        _spawn(_publish(layer, message))


async def _publish(layer: Any, message: dict[str, Any]) -> None:
    try:
        await layer.group_send(GROUP, message)
    except Exception:
        logger.exception("could not publish a change for /sync")


async def _listen() -> None:
    """Receive the other processes' changes for as long as the process lives."""
    layer = _channel_layer()
    if layer is None:
        return
    backoff = 0.1
    while True:
        try:
            channel = await layer.new_channel("dagma.sync.")
            await layer.group_add(GROUP, channel)
            backoff = 0.1
            while True:
                message = await layer.receive(channel)
                if message.get("type") != MESSAGE_TYPE or message.get("origin") == ORIGIN:
                    continue
                # Cache entries another process invalidated (dagcore.cache_invalidation).
                apply_broadcast_invalidations(message)
                _wake(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("channel layer listener failed; reconnecting in %.1fs", backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


# --------------------------------------------------------------------------- housekeeping


def _in_thread(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return fn()
        finally:
            release_all_connections()  # give the pooled connection back between runs

    return sync_to_async(run, thread_sensitive=False)


def _schedule_typing_sweep(due_ms: int) -> None:
    loop = _state.loop
    if loop is None:
        return
    if _state.typing_due is not None and _state.typing_due <= due_ms and _state.typing_timer is not None:
        return
    if _state.typing_timer is not None:
        _state.typing_timer.cancel()
    _state.typing_due = due_ms
    delay = max(0.0, (due_ms - now_ms()) / 1000 + 0.01)
    _state.typing_timer = loop.call_later(delay, lambda: _spawn(_typing_sweep()))


def _spawn(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _state.tasks.add(task)  # keep a reference until it is done
    task.add_done_callback(_state.tasks.discard)


async def _typing_sweep() -> None:
    _state.typing_timer = None
    _state.typing_due = None
    try:
        await _in_thread(expire_typing_notices)()
        upcoming = await _in_thread(get_next_typing_expiry)()
    except Exception:
        logger.exception("typing expiry failed")
        return
    if upcoming is not None:
        _schedule_typing_sweep(upcoming)


async def _housekeeping() -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            await _typing_sweep()
            if presence_enabled():
                await _in_thread(expire_presence)()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("sync housekeeping failed")


# --------------------------------------------------------------------------- start-up


def start(loop: asyncio.AbstractEventLoop) -> None:
    """Run the listener and housekeeping on ``loop`` (the server's); idempotent."""
    if _state.loop is not None and not _state.loop.is_closed():
        return
    _state.loop = loop

    def begin() -> None:
        for coro in (_listen(), _housekeeping()):
            _state.tasks.add(loop.create_task(coro))

    loop.call_soon_threadsafe(begin)


def ensure_started() -> None:
    """From a coroutine on the server's loop: start if ``on_start`` could not."""
    if _state.loop is None or _state.loop.is_closed():
        start(asyncio.get_running_loop())


def start_when_serving() -> None:
    """Called by ``on_start``: hook the server's loop if it is Twisted's asyncio reactor (daphne)."""
    reactor = sys.modules.get("twisted.internet.reactor")
    loop = getattr(reactor, "_asyncioEventloop", None)
    if reactor is not None and isinstance(loop, asyncio.AbstractEventLoop):
        reactor.callWhenRunning(lambda: start(loop))

"""The threads that build ``/sync`` answers, handed work in batches (issue #12: "share the
work between receivers of the same event"; "no thread hop per request on the long-poll path").

One message wakes every member of its room at once. Handing each woken long-poll to a
thread by itself (``sync_to_async``) costs per answer: a future and its callbacks on both
sides, a write to the loop's self-pipe, and the interpreter lock passed between the loop
and the builder (futex calls: a third of the server's CPU as system time, bench/results).
Here the calls that queue while the loop runs are taken together: one hop into a thread
builds several answers one after another, each in its own request's context (its query
clock, its log line), gives the thread's database connection back once, and hands every
outcome back in one callback.

Two builders: one's Python overlaps the other's database round trips; more only trade the
interpreter lock (``MAX_CONCURRENT_BUILDS`` below). A batch holds at most
``MAX_BATCH`` calls, so the first answers of a wave are not held back by the whole wave.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

#: Builder threads. Each build waits on PostgreSQL a few times, and every such wait hands
#: the interpreter lock to another thread: with many builders those hand-offs cost more
#: than the overlap of round trips gains. Measured (bench/client_api_bench.py, without test
#: hooks, 2 cores), 6 -> 2 builders: 20 receivers p95 66-86 -> 43-49 ms, CPU per delivered
#: sync 5.4-5.6 -> 4.2-4.6 ms; 200 receivers p95 1,055 -> 557 ms, CPU per sync 4.9 -> 3.3 ms.
MAX_CONCURRENT_BUILDS = 2
#: Calls per hop at most: a wave of 20 woken long-polls goes as 8 + 8 + 4.
MAX_BATCH = 8


@dataclass(eq=False)
class _Call:
    context: contextvars.Context
    fn: Callable[[], Any]
    future: asyncio.Future[Any]


class BatchedPool:
    """Run calls in ``threads`` long-lived threads, several calls per hop. Used from one event loop."""

    def __init__(self, name: str, *, threads: int, max_batch: int, after_batch: Callable[[], None]) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._threads = threads
        self._max_batch = max_batch
        self._after_batch = after_batch
        self._queue: deque[_Call] = deque()
        self._busy = 0
        self._dispatch_due = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a builder thread, in a copy of this context (as ``sync_to_async``)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append(_Call(contextvars.copy_context(), functools.partial(fn, *args), future))
        if self._busy < self._threads and not self._dispatch_due:
            # Not at once: the other long-polls the same change woke queue their builds in
            # this turn of the loop, and go in the same hop.
            self._dispatch_due = True
            loop.call_soon(self._dispatch, loop)
        return await future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._dispatch_due = False
        while self._queue and self._busy < self._threads:
            # Spread what waits over the free builders.
            share = min(self._max_batch, -(-len(self._queue) // (self._threads - self._busy)))
            taken = (self._queue.popleft() for _ in range(min(share, len(self._queue))))
            batch = [call for call in taken if not call.future.done()]  # done: its client went away
            if not batch:
                continue
            self._busy += 1
            hop = loop.run_in_executor(self._executor, self._run_batch, batch)
            hop.add_done_callback(functools.partial(self._settle, loop, batch))

    def _run_batch(self, batch: list[_Call]) -> list[tuple[bool, Any]]:
        """In a builder thread."""
        outcomes: list[tuple[bool, Any]] = []
        try:
            for call in batch:
                try:
                    outcomes.append((True, call.context.run(call.fn)))
                except Exception as exc:
                    outcomes.append((False, exc))
        finally:
            self._after_batch()
        return outcomes

    def _settle(self, loop: asyncio.AbstractEventLoop, batch: list[_Call], hop: asyncio.Future[Any]) -> None:
        """On the loop: hand each call its outcome, then start what queued meanwhile."""
        self._busy -= 1
        if hop.cancelled():
            outcomes: list[tuple[bool, Any]] = [(False, asyncio.CancelledError())] * len(batch)
        elif (failure := hop.exception()) is not None:
            outcomes = [(False, failure)] * len(batch)
        else:
            outcomes = hop.result()
        for call, (ok, value) in zip(batch, outcomes, strict=True):
            if call.future.done():
                continue
            if ok:
                call.future.set_result(value)
            else:
                call.future.set_exception(value)
        self._dispatch(loop)

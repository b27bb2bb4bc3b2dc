"""``rc_federation``: one noisy server cannot starve the others (issue 11).

Synapse's ``FederationRateLimiter`` semantics and option names, per origin server
(the authenticated ``X-Matrix`` origin), so every origin has its own budget:

* of the requests that arrived in the last ``window_size`` ms, those beyond
  ``sleep_limit`` first wait ``sleep_delay`` ms each;
* at most ``concurrent`` requests of the origin are processed at once; the others wait
  their turn;
* a request that finds more than ``reject_limit`` of the origin's requests waiting
  (sleeping or queued) is refused at once: 429 ``M_LIMIT_EXCEEDED`` with
  ``retry_after_ms`` (``window_size / sleep_limit``, as Synapse answers).

Transactions (``PUT /send``) are not held to these, as in Synapse (its ``/send`` servlet
has ``RATELIMIT = False``): a sender's transactions are all its traffic, one at a time, and
sleeping the eleventh of a second made every message after it half a second late. They
are only queued (:meth:`FederationRateLimiter.transaction`): at most ``concurrent`` of an
origin's transactions at once, and one arriving while more than ``reject_limit`` wait is
refused with 429.

The state lives in this process, as in Synapse (one Embassy process serves
federation); an Embassy restart starts every origin afresh.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dagcore.http.errors import MatrixError


@dataclass
class _Origin:
    times: deque[float] = field(default_factory=deque)
    waiting: int = 0
    running: int = 0
    turn: threading.Condition = field(default_factory=lambda: threading.Condition(threading.Lock()))


class FederationRateLimiter:
    """Per-origin limits (see the module docstring); :meth:`limit` wraps one request."""

    def __init__(
        self,
        *,
        window_size: int,
        sleep_limit: int,
        sleep_delay: int,
        reject_limit: int,
        concurrent: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.window_s = window_size / 1000
        self.sleep_limit = sleep_limit
        self.sleep_s = sleep_delay / 1000
        self.reject_limit = reject_limit
        self.concurrent = max(1, concurrent)
        self.retry_after_ms = int(window_size / sleep_limit) if sleep_limit else window_size
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._origins: dict[str, _Origin] = {}
        self._transactions: dict[str, _Origin] = {}

    def _state(self, origin: str, table: dict[str, _Origin] | None = None) -> _Origin:
        table = self._origins if table is None else table
        with self._lock:
            state = table.get(origin)
            if state is None:
                state = table[origin] = _Origin()
            return state

    @contextmanager
    def limit(self, origin: str) -> Iterator[None]:
        with self._held(origin, self._origins, delayed=True, what="requests"):
            yield

    @contextmanager
    def transaction(self, origin: str) -> Iterator[None]:
        """At most ``concurrent`` ``/send`` of ``origin`` at once, none delayed (see the module docstring)."""
        with self._held(origin, self._transactions, delayed=False, what="transactions"):
            yield

    @contextmanager
    def _held(self, origin: str, table: dict[str, _Origin], *, delayed: bool, what: str) -> Iterator[None]:
        """Refused over ``reject_limit`` waiting, ``sleep_delay`` past ``sleep_limit`` when
        ``delayed``, then one of ``concurrent`` running at once."""
        state = self._state(origin, table)
        delay = False
        with state.turn:
            if delayed:
                now = self._clock()
                while state.times and now - state.times[0] >= self.window_s:
                    state.times.popleft()
            if state.waiting > self.reject_limit:
                raise MatrixError(
                    429,
                    "M_LIMIT_EXCEEDED",
                    f"Too many {what} from {origin[:255]}",
                    retry_after_ms=self.retry_after_ms,
                )
            if delayed:
                state.times.append(now)
                delay = len(state.times) > self.sleep_limit
            state.waiting += 1
        try:
            if delay:
                self._sleep(self.sleep_s)
            with state.turn:
                while state.running >= self.concurrent:
                    state.turn.wait()
                state.running += 1
        finally:
            with state.turn:
                state.waiting -= 1
        try:
            yield
        finally:
            with state.turn:
                state.running -= 1
                state.turn.notify()


_limiter: tuple[tuple[int, ...], FederationRateLimiter] | None = None
_limiter_lock = threading.Lock()


def get_federation_ratelimiter(conf: dict[str, int]) -> FederationRateLimiter:
    """The process's limiter for the configured ``rc_federation`` (a new one if the option changed)."""
    global _limiter
    key = tuple(conf[k] for k in ("window_size", "sleep_limit", "sleep_delay", "reject_limit", "concurrent"))
    with _limiter_lock:
        if _limiter is None or _limiter[0] != key:
            window_size, sleep_limit, sleep_delay, reject_limit, concurrent = key
            _limiter = (
                key,
                FederationRateLimiter(
                    window_size=window_size,
                    sleep_limit=sleep_limit,
                    sleep_delay=sleep_delay,
                    reject_limit=reject_limit,
                    concurrent=concurrent,
                ),
            )
        return _limiter[1]

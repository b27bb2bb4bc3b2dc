"""``tribune.sync.builds.BatchedPool``: the long-polls one change wakes are built in a few
hops, each call in its own request's context, each outcome to its own caller."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

from tribune.sync.builds import BatchedPool

request_name: contextvars.ContextVar[str] = contextvars.ContextVar("request_name", default="-")


class Recorder:
    def __init__(self) -> None:
        self.batches = 0
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def after_batch(self) -> None:
        with self.lock:
            self.batches += 1

    def build(self, value: int) -> str:
        if value < 0:
            raise ValueError(f"bad {value}")
        with self.lock:
            self.calls.append((request_name.get(), threading.get_ident()))
        return f"{request_name.get()}:{value}"


def pool_of(recorder: Recorder, *, threads: int = 2, max_batch: int = 8) -> BatchedPool:
    return BatchedPool("test-builds", threads=threads, max_batch=max_batch, after_batch=recorder.after_batch)


async def one_request(pool: BatchedPool, recorder: Recorder, name: str, value: int) -> str:
    request_name.set(name)  # what the access log's observation is: set per request
    return await pool.run(recorder.build, value)


def test_the_builds_one_change_wakes_go_in_one_hop_per_builder() -> None:
    recorder = Recorder()
    pool = pool_of(recorder)

    async def wave() -> list[str]:
        return await asyncio.gather(*(one_request(pool, recorder, f"r{i}", i) for i in range(10)))

    answers = asyncio.run(wave())
    assert answers == [f"r{i}:{i}" for i in range(10)]  # each in its own request's context
    assert recorder.batches == 2  # 5 + 5: two hops instead of ten
    assert len({thread for _, thread in recorder.calls}) <= 2


def test_a_batch_holds_max_batch_calls_at_most() -> None:
    recorder = Recorder()
    pool = pool_of(recorder, threads=1, max_batch=4)

    async def wave() -> list[str]:
        return await asyncio.gather(*(one_request(pool, recorder, f"r{i}", i) for i in range(10)))

    assert asyncio.run(wave()) == [f"r{i}:{i}" for i in range(10)]
    assert recorder.batches == 3  # 4 + 4 + 2


def test_a_failing_call_fails_only_its_own_request_and_the_batch_still_ends() -> None:
    recorder = Recorder()
    pool = pool_of(recorder, threads=1)

    async def wave() -> list[Any]:
        values = [1, -2, 3]
        return await asyncio.gather(
            *(one_request(pool, recorder, f"r{i}", v) for i, v in enumerate(values)), return_exceptions=True
        )

    first, failed, third = asyncio.run(wave())
    assert (first, third) == ("r0:1", "r2:3")
    assert isinstance(failed, ValueError) and str(failed) == "bad -2"
    assert recorder.batches == 1  # the connection went back once, after the failure too


def test_a_request_gone_before_its_turn_is_not_built() -> None:
    recorder = Recorder()
    pool = pool_of(recorder, threads=1)

    async def scenario() -> str:
        gone = asyncio.ensure_future(one_request(pool, recorder, "gone", 1))
        await asyncio.sleep(0)  # queued
        gone.cancel()
        kept = await one_request(pool, recorder, "kept", 2)
        with pytest.raises(asyncio.CancelledError):
            await gone
        return kept

    assert asyncio.run(scenario()) == "kept:2"
    assert [name for name, _ in recorder.calls] == ["kept"]


def test_calls_that_queue_while_every_builder_is_busy_go_together_next() -> None:
    recorder = Recorder()
    release = threading.Event()
    pool = pool_of(recorder, threads=1)

    def slow() -> str:
        release.wait(10)
        return "slow"

    async def scenario() -> list[str]:
        first = asyncio.ensure_future(pool.run(slow))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the slow call is in the builder
        queued = [asyncio.ensure_future(one_request(pool, recorder, f"q{i}", i)) for i in range(3)]
        await asyncio.sleep(0)
        release.set()
        return [await first, *await asyncio.gather(*queued)]

    assert asyncio.run(scenario()) == ["slow", "q0:0", "q1:1", "q2:2"]
    assert recorder.batches == 2  # the slow call's hop, then the three queued in one

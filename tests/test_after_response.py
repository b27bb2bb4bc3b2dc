"""Calls held until a request's response is written (``dagcore.notifier.after_response``): the
``/sync`` wake of a sent event comes after the ``PUT /send`` answered, and none is ever lost."""

from __future__ import annotations

import contextvars
import threading

from dagcore.notifier import AfterResponse, after_response, holding_for_response


def test_without_a_holder_a_call_runs_at_once() -> None:
    ran: list[int] = []
    after_response(lambda: ran.append(1))
    assert ran == [1]


def test_held_calls_wait_for_the_response_then_later_ones_run_at_once() -> None:
    ran: list[str] = []
    held = AfterResponse()
    token = holding_for_response.set(held)
    try:
        # As DirectViews runs a plain view: in a thread, in a copy of the request's context.
        context = contextvars.copy_context()
        worker = threading.Thread(target=context.run, args=(after_response, lambda: ran.append("wake")))
        worker.start()
        worker.join()
        assert ran == []
    finally:
        holding_for_response.reset(token)
    for call in held.close():
        call()
    assert ran == ["wake"]
    # A view still running when its client went away commits after the close: not dropped.
    context.run(after_response, lambda: ran.append("late"))
    assert ran == ["wake", "late"]

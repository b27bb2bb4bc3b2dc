"""``BufferedStreamHandler``: a server's log lines go out in batches, a warning at once, and a
management command's lines at once (its ``--json`` document on stdout comes after them)."""

from __future__ import annotations

import io
import logging
import time

from dagma_project.logging import BufferedStreamHandler


def make(*, buffering: bool, period: float = 60.0, capacity: int = 3) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = BufferedStreamHandler(out, period=period, capacity=capacity)
    handler.buffering = buffering
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"test.buffered.{time.monotonic_ns()}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, out


def test_without_buffering_every_line_is_written_at_once() -> None:
    logger, out = make(buffering=False)
    logger.info("one")
    assert out.getvalue() == "one\n"


def test_a_server_writes_its_lines_in_batches_and_a_warning_at_once() -> None:
    logger, out = make(buffering=True)
    logger.info("one")
    logger.info("two")
    assert out.getvalue() == ""
    logger.warning("three")  # a warning takes what waits with it
    assert out.getvalue() == "one\ntwo\nthree\n"
    for n in range(3):
        logger.info(f"n{n}")
    assert out.getvalue().endswith("n0\nn1\nn2\n")  # the capacity is reached


def test_waiting_lines_are_written_within_the_period_and_at_flush() -> None:
    logger, out = make(buffering=True, period=0.05)
    logger.info("soon")
    deadline = time.monotonic() + 5
    while out.getvalue() != "soon\n":
        assert time.monotonic() < deadline, "the line was never written"
        time.sleep(0.01)  # polling the observable, with a deadline
    logger.info("at exit")
    for handler in logger.handlers:
        handler.flush()  # what logging.shutdown does
    assert out.getvalue() == "soon\nat exit\n"

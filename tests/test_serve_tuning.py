"""``manage.py serve`` tunes the garbage collector and log records before it serves (issue #12)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest

from dagcore.management.commands.serve import (
    YOUNG_COLLECTION_THRESHOLD,
    _trim_log_records,
    _tune_garbage_collector,
)


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_are_frozen_and_the_young_collected_less_often(restored_gc: None) -> None:
    module_dict = vars(gc)  # lives as long as the process, like every start-up object
    assert gc.get_freeze_count() == 0
    _tune_garbage_collector()
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD
    # A full collection no longer walks what start-up made.
    assert not any(obj is module_dict for obj in gc.get_objects(generation=2))


def test_log_records_are_made_without_the_callers_frame() -> None:
    saved = (logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    try:
        _trim_log_records()
        record = logging.getLogger("dagma.access").makeRecord(
            "dagma.access", logging.INFO, "(unknown file)", 0, "GET /sync 200", (), None
        )
        assert record.threadName is None and record.processName is None
        assert logging._srcfile is None  # no stack walk per record
    finally:
        logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = saved

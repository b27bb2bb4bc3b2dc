"""The in-process task runner: Celery's job when there is no broker (the quick start).

Tasks submitted after commit run on a small thread pool; the beat schedule runs
on a timer thread. Nothing here is the source of truth — the outbox and
job tables are — so a crash loses at most a nudge, never work.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dagcore.store.transaction import close_old_connections
from dagcore.taskqueue.schedule import BEAT_SCHEDULE

logger = logging.getLogger("dagma.tasks")

_executor: ThreadPoolExecutor | None = None
_beat_thread: threading.Thread | None = None
_stop = threading.Event()


def is_running() -> bool:
    return _executor is not None


def _run(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        func(*args, **kwargs)
    except Exception:
        logger.exception("in-process task %s failed", getattr(func, "__name__", func))
    finally:
        close_old_connections()


def submit(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    if _executor is None:
        _run(func, args, kwargs)
        return
    _executor.submit(_run, func, args, kwargs)


def _beat_loop() -> None:
    next_run = {name: time.monotonic() + every for name, (_, every) in BEAT_SCHEDULE.items()}
    while not _stop.wait(1.0):
        now = time.monotonic()
        for name, (task_name, every) in BEAT_SCHEDULE.items():
            if now >= next_run[name]:
                next_run[name] = now + every
                module, _, attr = task_name.rpartition(".")
                submit(getattr(importlib.import_module(module), attr).run)


def start_in_process_runner(workers: int = 2) -> None:
    global _executor, _beat_thread
    if _executor is not None:
        return

    # Resolve every scheduled task now: a misnamed one fails start-up, not a beat an hour later.
    for task_name, _ in BEAT_SCHEDULE.values():
        module, _, attr = task_name.rpartition(".")
        getattr(importlib.import_module(module), attr)
    _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dagma-task")
    _beat_thread = threading.Thread(target=_beat_loop, name="dagma-beat", daemon=True)
    _beat_thread.start()
    logger.info("in-process task runner started (no broker configured)")


def stop_in_process_runner() -> None:
    global _executor
    _stop.set()
    if _executor is not None:
        _executor.shutdown(wait=True, cancel_futures=False)
        _executor = None

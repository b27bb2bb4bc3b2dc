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
from dagcore.taskqueue.outcomes import note_task_end
from dagcore.taskqueue.schedule import BEAT_SCHEDULE

logger = logging.getLogger("dagma.tasks")

_executor: ThreadPoolExecutor | None = None
_beat_thread: threading.Thread | None = None
_stop = threading.Event()
#: Whether this process's runner sends federation traffic (``serve all`` / ``serve embassy``).
_sends_federation = False


def is_running() -> bool:
    return _executor is not None


def sends_federation() -> bool:
    """Whether the runner of this process runs the federation sender (Tribune's does not)."""
    return _executor is not None and _sends_federation


def _run(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    # Task names are their module and function (``embassy.tasks.send_pending``), as in Celery.
    task = f"{getattr(func, '__module__', '?')}.{getattr(func, '__name__', '?')}"
    if func is _run_beat_job:
        task = args[1]  # the beat job's own task, not its wrapper
    started = time.monotonic()
    try:
        func(*args, **kwargs)
    except Exception as exc:
        logger.exception("in-process task %s failed", getattr(func, "__name__", func))
        note_task_end(task, outcome="failed", seconds=time.monotonic() - started, error=repr(exc))
    else:
        note_task_end(task, outcome="ok", seconds=time.monotonic() - started)
    finally:
        close_old_connections()


def submit(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    if _executor is None:
        _run(func, args, kwargs)
        return
    _executor.submit(_run, func, args, kwargs)


def _claim(name: str, owner: str) -> bool:
    """Take the job's lease in the database, on the beat thread at the tick: a second runner
    of this homeserver (another process) then skips the job (``dagcore.taskqueue.jobs``)."""
    from dagcore.taskqueue.jobs import UnknownJob, claim_due_job

    try:
        return claim_due_job(name, owner=owner)
    except UnknownJob:
        return True  # a job given to this runner but not in BEAT_SCHEDULE (tests pass their own)
    except Exception:
        logger.exception("beat job %s: cannot take its lease", name)
        return False
    finally:
        close_old_connections()


def _run_beat_job(name: str, task_name: str, owner: str) -> None:
    """Run a claimed job, recording its end and outcome (and freeing the lease)."""
    from dagcore.taskqueue.jobs import run_claimed_job

    if name in BEAT_SCHEDULE:
        run_claimed_job(name, owner=owner)
    else:
        module, _, attr = task_name.rpartition(".")
        getattr(importlib.import_module(module), attr).run()


def _beat_loop(jobs: dict[str, tuple[str, float]]) -> None:
    from dagcore.taskqueue.jobs import runner_id

    owner = f"in-process:{runner_id()}"
    next_run = {name: time.monotonic() + every for name, (_, every) in jobs.items()}
    while not _stop.wait(1.0):
        now = time.monotonic()
        for name, (task_name, every) in jobs.items():
            if now >= next_run[name]:
                next_run[name] = now + every
                if _claim(name, owner):
                    submit(_run_beat_job, name, task_name, owner)
                else:
                    logger.info(
                        "beat job %s skipped: another runner has it or ran it within its period", name
                    )


def start_in_process_runner(
    workers: int = 2, jobs: dict[str, tuple[str, float]] | None = None, *, sends_federation: bool = True
) -> None:
    """Run submitted tasks on a thread pool (never inside the request that queued them) and
    ``jobs`` (default: the whole beat schedule) on a timer thread. ``sends_federation``:
    this process may start federation senders (not Tribune: DESIGN.md, Embassy sends)."""
    global _executor, _beat_thread, _sends_federation
    if _executor is not None:
        return
    _sends_federation = sends_federation
    jobs = dict(BEAT_SCHEDULE) if jobs is None else jobs
    # Resolve every scheduled task now: a misnamed one fails start-up, not a beat an hour later.
    for task_name, _ in jobs.values():
        module, _, attr = task_name.rpartition(".")
        getattr(importlib.import_module(module), attr)
    _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dagma-task")
    _beat_thread = threading.Thread(target=_beat_loop, args=(jobs,), name="dagma-beat", daemon=True)
    _beat_thread.start()
    logger.info("in-process task runner started (no broker configured)")


def stop_in_process_runner() -> None:
    """Stop the beat and let submitted tasks finish; the runner can then be started again."""
    global _executor, _beat_thread, _sends_federation
    _stop.set()
    if _beat_thread is not None:
        _beat_thread.join()
        _beat_thread = None
    if _executor is not None:
        _executor.shutdown(wait=True, cancel_futures=False)
        _executor = None
    _sends_federation = False
    _stop.clear()

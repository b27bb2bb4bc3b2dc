"""What every serving process does once at start (after Django is set up)."""

from __future__ import annotations

import importlib
import logging

from django.conf import settings

logger = logging.getLogger("dagma")

_started = False

#: Per-role hooks: each interface registers its notifier listeners etc. here. Every module
#: listed must exist and start: a hook that fails stops the process, loudly.
ROLE_HOOKS = {
    "tribune": ["tribune.apps_hooks"],
    "embassy": ["dagcore.broadcast", "embassy.tasks"],
    "politburo": ["dagcore.broadcast"],
    "all": ["tribune.apps_hooks", "embassy.tasks"],
    "worker": ["dagcore.broadcast"],
}


def on_process_start() -> None:
    global _started
    if _started:
        return
    _started = True
    if settings.CELERY_BROKER_URL:
        # Loading the Celery app registers the broker as the destination of queued tasks
        # (dagcore.taskqueue.dispatch); without it they would go to Celery's default app.
        importlib.import_module("dagma_project.broker")
    role = getattr(settings, "DAGMA_SERVER_ROLE", "all")
    # Imported here: the Celery worker loads this module before Django's apps are ready.
    from dagcore.store.timing import install_query_timing
    from dagma_project.logging import buffer_log_lines
    from dagma_project.metrics import start_metrics

    # Every statement's time (the access line's db time, dagma_db_query_duration_seconds).
    install_query_timing()
    if role != "worker":
        # A worker's listener is its main process's (dagma_project.celery), not its pool's.
        start_metrics(role)
        # A line per request: written in batches (dagma_project.logging.BufferedStreamHandler).
        buffer_log_lines()
    if not getattr(settings, "DAGMA_NO_HEARTBEAT", False):
        from dagcore.actions.heartbeat import start_heartbeat

        start_heartbeat(role)
    for module in ROLE_HOOKS[role]:
        importlib.import_module(module).on_start()
    logger.info("dagma %s process started for %s", role, settings.SERVER_NAME)

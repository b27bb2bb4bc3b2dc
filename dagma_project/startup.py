"""What every serving process does once at start (after Django is set up)."""

from __future__ import annotations

import importlib
import logging

from django.conf import settings

logger = logging.getLogger("dagma")

_started = False

#: Per-role hooks: each interface registers its notifier listeners etc. here.
ROLE_HOOKS = {
    "tribune": ["tribune.apps_hooks"],
    "embassy": ["dagcore.broadcast", "embassy.apps_hooks"],
    "politburo": ["dagcore.broadcast"],
    "all": ["tribune.apps_hooks", "embassy.apps_hooks"],
    "worker": ["dagcore.broadcast"],
}


def on_process_start() -> None:
    global _started
    if _started:
        return
    _started = True
    role = getattr(settings, "DAGMA_SERVER_ROLE", "all")
    for module in ROLE_HOOKS.get(role, []):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.on_start()
    logger.info("dagma %s process started for %s", role, settings.SERVER_NAME)

"""What a Tribune process does once at start (called by ``dagma_project.startup``).

``/sync`` long-polls are woken by committed changes: the notifier listener
wakes this process's waiters and publishes on the channel layer, and the
listener task (started on the server's event loop) wakes waiters for changes
made by other processes.
"""

from __future__ import annotations

from dagcore.notifier import add_listener
from tribune.sync import notifier


def on_start() -> None:

    add_listener(notifier.on_change)
    notifier.start_when_serving()

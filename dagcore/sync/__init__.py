"""The sync engine: ``build_sync_response(request=SyncRequest(...)) -> SyncResult``.

One module per section of the response (``rooms`` with ``plan``, ``timeline``,
``summary``, ``room_state``, ``ephemeral``, ``unread`` and ``invites``; ``account_data``,
``to_device``, ``device_lists``, ``presence``, ``e2ee_counts``), each a function of a
frozen :class:`~dagcore.sync.context.SyncContext` and of what it is handed, so a section
can be run and tested alone. ``memory`` holds what a process remembers between one
device's syncs; ``tokens`` the sync and room tokens.
"""

from dagcore.sync.context import SyncContext, SyncRequest
from dagcore.sync.engine import SyncResult, build_sync_response

__all__ = ["SyncContext", "SyncRequest", "SyncResult", "build_sync_response"]

"""User directory search (spec: client-server API "User directory").

https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3user_directorysearch
"""

from __future__ import annotations

from django.conf import settings

from dagcore.store import user_directory as directory_store
from dagcore.store.user_directory import DirectoryEntry

DEFAULT_LIMIT = 10
MAX_LIMIT = 50


def search_user_directory(*, searcher: str, term: str, limit: int) -> tuple[list[DirectoryEntry], bool]:
    """Users visible to ``searcher`` whose user ID or display name contains ``term``
    (case-insensitively), best matches first; and whether the list was cut at ``limit``.

    Local users are shown with their global profile; remote users with the display
    name they use in the rooms they share.
    """
    config = settings.DAGMA.user_directory or {}
    if not config.get("enabled", True):
        return [], False
    term = term.strip()
    found: dict[str, DirectoryEntry] = {
        e.user_id: e
        for e in directory_store.search_room_members(searcher=searcher, term=term, limit=limit + 1)
    }
    if config.get("search_all_users", False):
        for e in directory_store.search_local_users(term=term, limit=limit + 1):
            if e.user_id not in found or e.rank < found[e.user_id].rank:
                found[e.user_id] = e
    ranked = sorted(found.values(), key=lambda e: (e.rank, e.user_id))
    limited = len(ranked) > limit
    ranked = ranked[:limit]
    profiles = directory_store.get_local_profiles([e.user_id for e in ranked])
    results = [
        DirectoryEntry(e.user_id, *profiles[e.user_id], e.rank) if e.user_id in profiles else e
        for e in ranked
    ]
    return results, limited

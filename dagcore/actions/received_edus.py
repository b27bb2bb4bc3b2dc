"""Device-list and cross-signing EDUs from other servers (inbound).

Spec: server-server API "Device Management" (``m.device_list_update``) and
"End-to-End Encryption" (``m.signing_key_update``). Each EDU is about one user,
who must be the sending server's own (issue 11: an EDU about another server's
user is dropped, never an error for the transaction). We keep only what concerns
users who share a room with one of ours (their server sends us the updates, so a
cached list stays fresh); the others are asked live when someone queries them.

An update applies when it follows what we hold (every ``prev_id`` at or before
our ``stream_id``); otherwise we missed one, so the cached list is marked stale
and fetched again with ``/user/devices`` (a task; a query meanwhile fetches it
itself). Either way our users sharing a room see the user in
``device_lists.changed`` and re-query.
"""

from __future__ import annotations

import logging
from typing import Any

from dagcore.actions.device_lists import mark_remote_device_list_changed
from dagcore.actions.federated_keys import forget_signatures_on_replaced_master
from dagcore.clock import now_ms
from dagcore.federation.user_keys import cross_signing_key_valid, device_keys_valid
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.identifiers import parse_user_id
from dagcore.store import remote_devices as remote_store
from dagcore.store import transaction
from dagcore.taskqueue.dispatch import enqueue

logger = logging.getLogger("dagma.e2ee")

RESYNC_TASK = "dagcore.tasks.e2e.resync_remote_device_list"


def _origins_user(origin: str, user_id: object) -> str | None:
    """``user_id`` if it is a valid user ID of ``origin``, else None (the EDU is dropped)."""
    if not isinstance(user_id, str):
        return None
    try:
        _, server = parse_user_id(user_id)
    except ValueError:
        return None
    return user_id if server == origin else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def do_receive_device_list_update(*, origin: str, content: Any) -> str:
    """Apply one ``m.device_list_update``; returns what was done (for logs and tests):
    "dropped", "untracked", "old", "applied" or "resync"."""
    if not isinstance(content, dict):
        return "dropped"
    user_id = _origins_user(origin, content.get("user_id"))
    device_id = content.get("device_id")
    stream_id = _int(content.get("stream_id"))
    prev_ids = content.get("prev_id", [])
    deleted = content.get("deleted", False)
    keys = content.get("keys")
    if (
        user_id is None
        or not isinstance(device_id, str)
        or not device_id
        or len(device_id) > 255
        or stream_id is None
        or not isinstance(prev_ids, list)
        or not all(_int(p) is not None for p in prev_ids)
        or not isinstance(deleted, bool)
    ):
        return "dropped"
    if keys is not None and not device_keys_valid(keys, user_id=user_id, device_id=device_id):
        return "dropped"  # keys the device did not sign are never stored
    if not remote_store.get_tracked_users([user_id]):
        return "untracked"
    name = content.get("device_display_name")
    with transaction.atomic():
        cached = remote_store.lock_cached_list(user_id)
        if cached is not None and not cached.stale and stream_id <= cached.stream_id:
            return "old"  # seen already (a resent transaction, or a resync that included it)
        if cached is None:
            # Never fetched: nothing to apply it to. The next query fetches the whole list.
            outcome = "untracked-list"
        elif cached.stale or not prev_ids or any(p > cached.stream_id for p in prev_ids):
            # Spec: "If the receiving server does not know of all the prev_ids, it should
            # resync the device list" (an empty prev_id names no base to apply it to).
            remote_store.mark_stale(user_id=user_id, now=now_ms())
            enqueue(RESYNC_TASK, user_id)
            outcome = "resync"
        else:
            if deleted:
                remote_store.delete_device(user_id=user_id, device_id=device_id)
            else:
                remote_store.upsert_device(
                    user_id=user_id,
                    device_id=device_id,
                    key_json=encode_canonical_json(keys).decode() if keys is not None else None,
                    display_name=name[:255] if isinstance(name, str) else None,
                )
            remote_store.set_cached_list(user_id=user_id, stream_id=stream_id, stale=False, now=now_ms())
            outcome = "applied"
        mark_remote_device_list_changed(user_id=user_id, reason=f"m.device_list_update {outcome}")
    return outcome


def do_receive_signing_key_update(*, origin: str, content: Any) -> str:
    """Store a remote user's new master / self-signing key (``m.signing_key_update``):
    "dropped", "untracked" or "applied"."""
    if not isinstance(content, dict):
        return "dropped"
    user_id = _origins_user(origin, content.get("user_id"))
    if user_id is None:
        return "dropped"
    master = content.get("master_key")
    self_signing = content.get("self_signing_key")
    if master is None and self_signing is None:
        return "dropped"
    if master is not None and not cross_signing_key_valid(master, user_id=user_id, usage="master"):
        return "dropped"
    if self_signing is not None and not cross_signing_key_valid(
        self_signing, user_id=user_id, usage="self_signing"
    ):
        return "dropped"
    if not remote_store.get_tracked_users([user_id]):
        return "untracked"
    with transaction.atomic():
        if master is not None:
            forget_signatures_on_replaced_master(user_id=user_id, master_key=master)
        for usage, key in (("master", master), ("self_signing", self_signing)):
            if key is not None:
                remote_store.set_cross_signing_key(
                    user_id=user_id, usage=usage, key_json=encode_canonical_json(key).decode()
                )
        mark_remote_device_list_changed(user_id=user_id, reason="m.signing_key_update")
    return "applied"

"""A local user's keys as other users and other servers see them.

Spec: client-server API "Cross-signing" (who sees which signatures) and server-server
API "End-to-End Encryption" / "Device Management". Shared by ``/keys/query`` for local
users, the federation endpoints (``/user/devices``, ``/user/keys/query``) and the
``m.device_list_update`` / ``m.signing_key_update`` EDUs we send, so every one of them
publishes the same keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dagcore.store import e2e_keys as key_store


def own_signatures(device_keys: dict[str, Any], *, user_id: str, device_id: str) -> dict[str, Any]:
    """``device_keys`` with only the device's signatures of itself.

    A client that cross-signs its device before its first key upload (matrix-sdk-crypto
    does) sends the self-signing key's signature inside the device keys. Kept there, it
    would outlive a cross-signing reset, which forgets the old key's signatures only
    from the signatures table: ``/keys/query`` would show the device signed by a key
    the user no longer has. Cross-signatures live in that table, nowhere else.
    """
    mine = device_keys.get("signatures", {}).get(user_id, {})
    kept = {key_id: sig for key_id, sig in mine.items() if key_id.partition(":")[2] == device_id}
    return {**device_keys, "signatures": {user_id: kept} if kept else {}}


def add_signatures(key: dict[str, Any], sigs: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """A copy of ``key`` with ``(signer_user_id, signer_key_id, signature)`` merged into ``signatures``."""
    sigs = list(sigs)
    if not sigs:
        return key
    merged = {user: dict(entry) for user, entry in key.get("signatures", {}).items()}
    for signer, signer_key_id, signature in sigs:
        merged.setdefault(signer, {})[signer_key_id] = signature
    return {**key, "signatures": merged}


@dataclass
class PublishedKeys:
    """Device keys (``user -> device -> keys``), display names, master and self-signing keys."""

    devices: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    display_names: dict[tuple[str, str], str | None] = field(default_factory=dict)
    master_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    self_signing_keys: dict[str, dict[str, Any]] = field(default_factory=dict)


def get_published_keys(user_ids: Iterable[str]) -> PublishedKeys:
    """The keys of these local users with only their own signatures (what another server's
    users may see: a user-signing key and signatures by other users are never published)."""
    users = sorted(set(user_ids))
    out = PublishedKeys(devices={u: {} for u in users})
    if not users:
        return out
    with key_store.consistent_reads():
        signature_rows = key_store.get_signatures_on(target_user_ids=users)
        device_rows = key_store.get_device_keys_for_users(users)
        cross_signing_rows = key_store.get_cross_signing_keys(users, ["master", "self_signing"])
    signatures: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for target_user, target_key, signer, signer_key, sig in signature_rows:
        if signer == target_user:
            signatures.setdefault((target_user, target_key), []).append((signer, signer_key, sig))
    for row in device_rows:
        device = own_signatures(row.keys, user_id=row.user_id, device_id=row.device_id)
        out.devices[row.user_id][row.device_id] = add_signatures(
            device, signatures.get((row.user_id, row.device_id), ())
        )
        out.display_names[(row.user_id, row.device_id)] = row.display_name
    for csk in cross_signing_rows:
        if csk.usage == "master":
            out.master_keys[csk.user_id] = add_signatures(
                csk.key, signatures.get((csk.user_id, csk.public_key), ())
            )
        else:
            out.self_signing_keys[csk.user_id] = csk.key
    return out

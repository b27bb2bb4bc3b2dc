"""Remote users' device lists and cross-signing keys, as their servers published them.

Spec: server-server API "Device Management" and "End-to-End Encryption". Written by
the Embassy (``m.device_list_update`` / ``m.signing_key_update`` EDUs) and by a
resync (``GET /user/devices``); read by ``/keys/query`` for users on other servers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dagcore.models import RemoteCrossSigningKey, RemoteDevice, RemoteDeviceList, RoomMembership


@dataclass(frozen=True, slots=True)
class CachedDeviceList:
    user_id: str
    stream_id: int
    stale: bool


def get_cached_lists(user_ids: Iterable[str]) -> dict[str, CachedDeviceList]:
    users = sorted(set(user_ids))
    if not users:
        return {}
    return {
        u: CachedDeviceList(u, int(s), bool(stale))
        for u, s, stale in RemoteDeviceList.objects.filter(user_id__in=users).values_list(
            "user_id", "stream_id", "stale"
        )
    }


def lock_cached_list(user_id: str) -> CachedDeviceList | None:
    """The user's cache row, locked until the transaction ends (updates of one user apply in turn)."""
    row = RemoteDeviceList.objects.select_for_update().filter(user_id=user_id).first()
    return None if row is None else CachedDeviceList(row.user_id, row.stream_id, row.stale)


def set_cached_list(*, user_id: str, stream_id: int, stale: bool, now: int) -> None:
    RemoteDeviceList.objects.update_or_create(
        user_id=user_id, defaults={"stream_id": stream_id, "stale": stale, "updated_ts": now}
    )


def mark_stale(*, user_id: str, now: int) -> None:
    """The list missed an update: refetch before serving it (kept if there is none yet: no row)."""
    RemoteDeviceList.objects.filter(user_id=user_id).update(stale=True, updated_ts=now)


def get_devices(user_ids: Iterable[str]) -> dict[str, dict[str, tuple[dict[str, Any] | None, str | None]]]:
    """``user -> device -> (keys or None, display name)`` for these remote users (one query)."""
    users = sorted(set(user_ids))
    out: dict[str, dict[str, tuple[dict[str, Any] | None, str | None]]] = {}
    if not users:
        return out
    for user_id, device_id, key_json, name in RemoteDevice.objects.filter(user_id__in=users).values_list(
        "user_id", "device_id", "key_json", "display_name"
    ):
        out.setdefault(user_id, {})[device_id] = (json.loads(key_json) if key_json else None, name)
    return out


def upsert_device(*, user_id: str, device_id: str, key_json: str | None, display_name: str | None) -> None:
    RemoteDevice.objects.update_or_create(
        user_id=user_id, device_id=device_id, defaults={"key_json": key_json, "display_name": display_name}
    )


def delete_device(*, user_id: str, device_id: str) -> None:
    RemoteDevice.objects.filter(user_id=user_id, device_id=device_id).delete()


def replace_devices(*, user_id: str, devices: Sequence[tuple[str, str | None, str | None]]) -> None:
    """The user's whole device list: ``(device_id, key_json, display_name)`` rows replace what was."""
    RemoteDevice.objects.filter(user_id=user_id).delete()
    RemoteDevice.objects.bulk_create(
        [RemoteDevice(user_id=user_id, device_id=d, key_json=k, display_name=n) for d, k, n in devices]
    )


def get_cross_signing_keys(user_ids: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``user -> usage -> key`` for these remote users."""
    users = sorted(set(user_ids))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if not users:
        return out
    for user_id, usage, key_json in RemoteCrossSigningKey.objects.filter(user_id__in=users).values_list(
        "user_id", "usage", "key_json"
    ):
        out.setdefault(user_id, {})[usage] = json.loads(key_json)
    return out


def set_cross_signing_key(*, user_id: str, usage: str, key_json: str) -> None:
    RemoteCrossSigningKey.objects.update_or_create(
        user_id=user_id, usage=usage, defaults={"key_json": key_json}
    )


def delete_cross_signing_keys(*, user_id: str) -> None:
    RemoteCrossSigningKey.objects.filter(user_id=user_id).delete()


def get_tracked_users(user_ids: Iterable[str]) -> set[str]:
    """Those of ``user_ids`` who share a joined room with one of our users (one query): their
    servers send us their device-list updates, so a cached list of theirs stays fresh."""
    users = sorted(set(user_ids))
    if not users:
        return set()
    local_rooms = RoomMembership.objects.filter(membership="join", is_local=True).values("room_id")
    return set(
        RoomMembership.objects.filter(user_id__in=users, membership="join", room_id__in=local_rooms)
        .values_list("user_id", flat=True)
        .distinct()
    )

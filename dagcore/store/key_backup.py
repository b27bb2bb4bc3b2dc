"""Server-side key backups: versions and the session keys stored in them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Max, Q

from dagcore.models import KeyBackupSession, KeyBackupVersion
from dagcore.protocol.canonical_json import encode_canonical_json


def _dump(value: Any) -> str:
    return encode_canonical_json(value).decode()


# --------------------------------------------------------------------------- versions


def get_current_version(user_id: str) -> KeyBackupVersion | None:
    """The user's newest backup that is not deleted (the spec's "current" backup)."""
    return KeyBackupVersion.objects.filter(user_id=user_id, deleted=False).order_by("-version").first()


def get_current_version_for_update(user_id: str) -> KeyBackupVersion | None:
    """As :func:`get_current_version`, its row locked until the transaction ends (writers of its keys)."""
    return (
        KeyBackupVersion.objects.select_for_update()
        .filter(user_id=user_id, deleted=False)
        .order_by("-version")
        .first()
    )


def get_version(user_id: str, version: int, *, for_update: bool = False) -> KeyBackupVersion | None:
    """A version of the user's backups, deleted or not."""
    qs = KeyBackupVersion.objects.filter(user_id=user_id, version=version)
    if for_update:
        qs = qs.select_for_update()
    return qs.first()


def get_highest_version_number(user_id: str) -> int:
    """The highest version number the user ever had, deleted ones included (0 for none)."""
    return int(KeyBackupVersion.objects.filter(user_id=user_id).aggregate(m=Max("version"))["m"] or 0)


def insert_version(
    *, user_id: str, version: int, algorithm: str, auth_data: dict[str, Any]
) -> KeyBackupVersion:
    return KeyBackupVersion.objects.create(
        user_id=user_id, version=version, algorithm=algorithm, auth_data=_dump(auth_data)
    )


def set_auth_data(row: KeyBackupVersion, auth_data: dict[str, Any]) -> None:
    row.auth_data = _dump(auth_data)
    row.save(update_fields=["auth_data"])


def mark_version_deleted(row: KeyBackupVersion) -> None:
    """Delete the backup's keys and keep the version as a tombstone."""
    KeyBackupSession.objects.filter(backup=row).delete()
    row.deleted = True
    row.save(update_fields=["deleted"])


def bump_etag(row: KeyBackupVersion) -> None:
    row.etag += 1
    row.save(update_fields=["etag"])


def version_auth_data(row: KeyBackupVersion) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(row.auth_data)
    return data


# --------------------------------------------------------------------------- session keys


@dataclass(slots=True)
class BackedUpKey:
    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "first_message_index": self.first_message_index,
            "forwarded_count": self.forwarded_count,
            "is_verified": self.is_verified,
            "session_data": self.session_data,
        }


def count_keys(row: KeyBackupVersion) -> int:
    return KeyBackupSession.objects.filter(backup=row).count()


def get_keys(
    row: KeyBackupVersion, *, room_id: str | None = None, session_id: str | None = None
) -> list[BackedUpKey]:
    qs = KeyBackupSession.objects.filter(backup=row)
    if room_id is not None:
        qs = qs.filter(room_id=room_id)
    if session_id is not None:
        qs = qs.filter(session_id=session_id)
    return [
        BackedUpKey(r, s, fmi, fc, v, json.loads(data))
        for r, s, fmi, fc, v, data in qs.order_by("room_id", "session_id").values_list(
            "room_id", "session_id", "first_message_index", "forwarded_count", "is_verified", "session_data"
        )
    ]


def get_keys_by_session(
    row: KeyBackupVersion, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], BackedUpKey]:
    """The stored keys of these ``(room_id, session_id)`` pairs (batched queries)."""
    out: dict[tuple[str, str], BackedUpKey] = {}
    for start in range(0, len(pairs), 500):
        wanted = Q()
        for room_id, session_id in pairs[start : start + 500]:
            wanted |= Q(room_id=room_id, session_id=session_id)
        for r, s, fmi, fc, v, data in KeyBackupSession.objects.filter(wanted, backup=row).values_list(
            "room_id", "session_id", "first_message_index", "forwarded_count", "is_verified", "session_data"
        ):
            out[(r, s)] = BackedUpKey(r, s, fmi, fc, v, json.loads(data))
    return out


def save_keys(
    row: KeyBackupVersion, *, inserts: Sequence[BackedUpKey], updates: Sequence[BackedUpKey]
) -> None:
    """Insert new session keys and overwrite the given existing ones."""
    KeyBackupSession.objects.bulk_create(
        [
            KeyBackupSession(
                backup=row, room_id=k.room_id, session_id=k.session_id, first_message_index=k.first_message_index,
                forwarded_count=k.forwarded_count, is_verified=k.is_verified, session_data=_dump(k.session_data),
            )
            for k in inserts
        ],
        batch_size=500,
    )  # fmt: skip
    for k in updates:
        KeyBackupSession.objects.filter(backup=row, room_id=k.room_id, session_id=k.session_id).update(
            first_message_index=k.first_message_index,
            forwarded_count=k.forwarded_count,
            is_verified=k.is_verified,
            session_data=_dump(k.session_data),
        )


def delete_keys(row: KeyBackupVersion, *, room_id: str | None = None, session_id: str | None = None) -> int:
    qs = KeyBackupSession.objects.filter(backup=row)
    if room_id is not None:
        qs = qs.filter(room_id=room_id)
    if session_id is not None:
        qs = qs.filter(session_id=session_id)
    deleted, _ = qs.delete()
    return int(deleted)

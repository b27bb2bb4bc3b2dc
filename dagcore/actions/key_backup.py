"""Server-side key backups (spec: client-server API "Server-side key backups",
https://spec.matrix.org/v1.19/client-server-api/#server-side-key-backups).

A user has at most one current backup (their newest undeleted version); keys
may only be written into it. The answers' ``etag`` changes whenever the
backup's keys change, so another client of the user can tell it must re-read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dagcore.http.errors import MatrixError
from dagcore.http.params import ascii_uint
from dagcore.models import KeyBackupVersion
from dagcore.store import key_backup as backup_store
from dagcore.store import transaction
from dagcore.store.key_backup import BackedUpKey
from dagcore.store.transaction import IntegrityError


def _not_found(msg: str = "Unknown backup version") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", msg)


def parse_version(version: str | None) -> int | None:
    """A version as we hand them out (a decimal number), else None: no such backup."""
    return None if version is None else ascii_uint(version)


# --------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class BackupInfo:
    version: str
    algorithm: str
    auth_data: dict[str, Any]
    count: int
    etag: str

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "algorithm": self.algorithm,
            "auth_data": self.auth_data,
            "count": self.count,
            "etag": self.etag,
        }


@dataclass(frozen=True)
class BackupParams:
    """``algorithm`` and ``auth_data`` of a new or updated backup (``tribune.inputs``)."""

    algorithm: str
    auth_data: dict[str, Any]


def do_create_backup(*, user_id: str, params: BackupParams) -> str:
    """A new backup, which becomes the current one; returns its version.

    Numbers are never reused (deleted versions keep theirs), so a client holding
    an old version can never write into a newer backup by accident.
    """
    for _ in range(5):
        try:
            with transaction.atomic():
                number = backup_store.get_highest_version_number(user_id) + 1
                backup_store.insert_version(
                    user_id=user_id, version=number, algorithm=params.algorithm, auth_data=params.auth_data
                )
            return str(number)
        except IntegrityError:
            continue  # a concurrent create took the number: take the next one
    raise MatrixError(409, "M_UNKNOWN", "Too many concurrent backup creations; try again")


def _info(row: KeyBackupVersion) -> BackupInfo:
    return BackupInfo(
        version=str(row.version),
        algorithm=row.algorithm,
        auth_data=backup_store.version_auth_data(row),
        count=backup_store.count_keys(row),
        etag=str(row.etag),
    )


def get_backup_info(*, user_id: str, version: str | None) -> BackupInfo:
    """The current backup (``version`` None) or the named one; 404 if none or deleted."""
    if version is None:
        row = backup_store.get_current_version(user_id)
        if row is None:
            raise _not_found("No current backup version")
        return _info(row)
    number = parse_version(version)
    row = backup_store.get_version(user_id, number) if number is not None else None
    if row is None or row.deleted:
        raise _not_found()
    return _info(row)


def do_update_backup(*, user_id: str, version: str, params: BackupParams) -> None:
    """Spec ``PUT /room_keys/version/{version}``: only ``auth_data`` may change."""
    number = parse_version(version)
    with transaction.atomic():
        row = backup_store.get_version(user_id, number, for_update=True) if number is not None else None
        if row is None or row.deleted:
            raise _not_found()
        if row.algorithm != params.algorithm:
            raise MatrixError(400, "M_INVALID_PARAM", "Algorithm does not match")
        backup_store.set_auth_data(row, params.auth_data)


def do_delete_backup(*, user_id: str, version: str) -> None:
    """Spec: deletes the backup and its keys; deleting a deleted backup succeeds."""
    number = parse_version(version)
    with transaction.atomic():
        row = backup_store.get_version(user_id, number, for_update=True) if number is not None else None
        if row is None:
            raise _not_found()
        if not row.deleted:
            backup_store.mark_version_deleted(row)


# --------------------------------------------------------------------------- keys


def is_better(new: BackedUpKey, old: BackedUpKey) -> bool:
    """Whether ``new`` replaces ``old`` (spec "Storing keys"): a verified key beats an
    unverified one; then the lower ``first_message_index`` (it decrypts more
    history); then the lower ``forwarded_count`` (fewer hands it went through)."""
    if new.is_verified != old.is_verified:
        return new.is_verified
    if new.first_message_index != old.first_message_index:
        return new.first_message_index < old.first_message_index
    return new.forwarded_count < old.forwarded_count


@dataclass(frozen=True)
class KeysUpdate:
    etag: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"etag": self.etag, "count": self.count}


def _wrong_version(current: KeyBackupVersion) -> MatrixError:
    return MatrixError(
        403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version", current_version=str(current.version)
    )


def do_store_keys(*, user_id: str, version: str | None, keys: Sequence[BackedUpKey]) -> KeysUpdate:
    """Store keys in the current backup, keeping the better copy of each session's key."""
    if version is None:
        raise MatrixError(400, "M_MISSING_PARAM", "The version query parameter is required")
    with transaction.atomic():
        current = backup_store.get_current_version_for_update(user_id)
        if current is None:
            raise _not_found()
        if parse_version(version) != current.version:
            raise _wrong_version(current)
        # The last copy of a session in the request competes like any other.
        best: dict[tuple[str, str], BackedUpKey] = {}
        for key in keys:
            pair = (key.room_id, key.session_id)
            if pair not in best or is_better(key, best[pair]):
                best[pair] = key
        stored = backup_store.get_keys_by_session(current, list(best))
        inserts = [k for pair, k in best.items() if pair not in stored]
        updates = [k for pair, k in best.items() if pair in stored and is_better(k, stored[pair])]
        if inserts or updates:
            backup_store.save_keys(current, inserts=inserts, updates=updates)
            backup_store.bump_etag(current)
        return KeysUpdate(etag=str(current.etag), count=backup_store.count_keys(current))


def _readable_version(user_id: str, version: str | None, *, for_update: bool = False) -> KeyBackupVersion:
    if version is None:
        raise MatrixError(400, "M_MISSING_PARAM", "The version query parameter is required")
    number = parse_version(version)
    row = backup_store.get_version(user_id, number, for_update=for_update) if number is not None else None
    if row is None or row.deleted:
        raise _not_found()
    return row


def get_backed_up_keys(
    *, user_id: str, version: str | None, room_id: str | None = None, session_id: str | None = None
) -> dict[str, Any]:
    """The keys of any existing backup version (reading an older backup is allowed)."""
    row = _readable_version(user_id, version)
    keys = backup_store.get_keys(row, room_id=room_id, session_id=session_id)
    if session_id is not None:
        if not keys:
            raise MatrixError(404, "M_NOT_FOUND", "Key not found")
        return keys[0].to_json()
    if room_id is not None:
        return {"sessions": {k.session_id: k.to_json() for k in keys}}
    rooms: dict[str, Any] = {}
    for k in keys:
        rooms.setdefault(k.room_id, {"sessions": {}})["sessions"][k.session_id] = k.to_json()
    return {"rooms": rooms}


def do_delete_keys(
    *, user_id: str, version: str | None, room_id: str | None = None, session_id: str | None = None
) -> KeysUpdate:
    with transaction.atomic():
        row = _readable_version(user_id, version, for_update=True)
        if backup_store.delete_keys(row, room_id=room_id, session_id=session_id):
            backup_store.bump_etag(row)
        return KeysUpdate(etag=str(row.etag), count=backup_store.count_keys(row))

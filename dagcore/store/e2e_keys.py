"""Device keys, one-time and fallback keys, cross-signing keys and their signatures.

Every key is kept as the canonical JSON its owner uploaded (``key_json``), so
the signatures over it verify byte for byte when other clients download it.
Selectors take lists of users and answer in a fixed number of queries, however
many users are asked about (``/keys/query`` is called very often by clients).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q

from dagcore.clock import now_ms
from dagcore.models import (
    CrossSigningKey,
    CrossSigningSignature,
    Device,
    DeviceKeys,
    FallbackKey,
    OneTimeKey,
    RoomMembership,
)
from dagcore.store.dialect import is_postgres

# --------------------------------------------------------------------------- the per-user key lock


def user_key_lock_id(user_id: str) -> int:
    """The advisory lock key of ``user_id``'s key state (as ``pg_locks`` shows it: classid is
    the high 32 bits, objid the low ones)."""
    # Its own namespace, so it never meets a room's write lock (``rooms.lock_room_for_writing``).
    digest = hashlib.sha256(b"e2e_keys\x00" + user_id.encode()).digest()
    return int(struct.unpack(">q", digest[:8])[0])


def lock_user_keys(*, user_ids: Iterable[str]) -> None:
    """Serialise the changes of these users' key state (device keys, cross-signing keys and
    signatures) until the transaction ends; readers that must see them wait in
    :func:`wait_for_key_changes`.

    PostgreSQL: a transaction-scoped advisory lock per user, taken in sorted order (so
    two writers locking several users cannot deadlock). SQLite: nothing to do —
    IMMEDIATE transactions already serialise every writer. Must be called inside
    ``transaction.atomic()``.
    """
    if not is_postgres():
        return
    with connection.cursor() as cur:
        for user_id in sorted(set(user_ids)):
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [user_key_lock_id(user_id)])


def wait_for_key_changes(*, user_id: str) -> None:
    """Return once no change of ``user_id``'s key state that had begun is still running.

    A barrier, not a lock: it is held for no longer than the statement (PostgreSQL:
    a shared advisory lock, which waits for :func:`lock_user_keys` holders). A change
    that begins afterwards runs concurrently with the caller, which is fine — only
    changes already under way must be seen. SQLite: taking the write lock (an
    IMMEDIATE transaction) waits for the writer holding it.
    """
    if connection.in_atomic_block:
        return  # the caller's transaction decides what it sees
    if is_postgres():
        with connection.cursor() as cur:
            # Autocommit: the lock is released when this statement's transaction ends.
            cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", [user_key_lock_id(user_id)])
        return
    with transaction.atomic():
        pass


@contextmanager
def consistent_reads() -> Iterator[None]:
    """The reads inside see one committed state of the database (a snapshot).

    Several statements answer one ``/keys/query``; read one after the other at READ
    COMMITTED, they could mix the state before a change with the state after it
    (signatures from before a cross-signing reset, keys from after). PostgreSQL: a
    REPEATABLE READ, READ ONLY transaction (its snapshot is taken by its first
    query). SQLite: a transaction reads one snapshot too (an IMMEDIATE one, so it
    also waits for a writer). Inside a caller's transaction, that transaction decides.
    """
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        if is_postgres():
            with connection.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


# --------------------------------------------------------------------------- device keys


def get_device_keys_json(*, user_id: str, device_id: str) -> str | None:
    return (
        DeviceKeys.objects.filter(user_id=user_id, device_id=device_id)
        .values_list("key_json", flat=True)
        .first()
    )


def insert_device_keys(*, user_id: str, device_id: str, key_json: str) -> None:
    """Store a device's keys, unless a concurrent upload stored some first (then nothing)."""
    DeviceKeys.objects.bulk_create(
        [DeviceKeys(user_id=user_id, device_id=device_id, key_json=key_json)], ignore_conflicts=True
    )


def device_exists(*, user_id: str, device_id: str) -> bool:
    return Device.objects.filter(user__user_id=user_id, device_id=device_id).exists()


@dataclass(frozen=True, slots=True)
class StoredDeviceKeys:
    user_id: str
    device_id: str
    keys: dict[str, Any]
    display_name: str | None


def get_device_keys_for_users(user_ids: Iterable[str]) -> list[StoredDeviceKeys]:
    """Uploaded device keys of these users' existing devices, with display names (two queries)."""
    users = sorted(set(user_ids))
    if not users:
        return []
    names = {
        (user_id, device_id): name
        for user_id, device_id, name in Device.objects.filter(user__user_id__in=users).values_list(
            "user__user_id", "device_id", "display_name"
        )
    }
    out = []
    for user_id, device_id, key_json in DeviceKeys.objects.filter(user_id__in=users).values_list(
        "user_id", "device_id", "key_json"
    ):
        if (user_id, device_id) in names:  # keys of a deleted device are never shown
            out.append(
                StoredDeviceKeys(user_id, device_id, json.loads(key_json), names[(user_id, device_id)])
            )
    return out


def delete_keys_of_deleted_devices(*, user_id: str) -> None:
    """Forget every key of the user's devices that no longer exist.

    Called by the writers that delete devices: a device ID may be logged in
    again later, and its new keys must not meet the old ones (one-time keys of a
    dead key pair would be handed out and fail to decrypt).
    """
    alive = Device.objects.filter(user__user_id=user_id).values("device_id")
    DeviceKeys.objects.filter(user_id=user_id).exclude(device_id__in=alive).delete()
    OneTimeKey.objects.filter(user_id=user_id).exclude(device_id__in=alive).delete()
    FallbackKey.objects.filter(user_id=user_id).exclude(device_id__in=alive).delete()
    # Signatures on a device (target) and by a device (of the master key) go with it.
    dead_targets = (
        CrossSigningSignature.objects.filter(target_user_id=user_id)
        .exclude(target_key_id__in=alive)
        .exclude(target_key_id__in=CrossSigningKey.objects.filter(user_id=user_id).values("public_key"))
    )
    dead_targets.delete()


# --------------------------------------------------------------------------- one-time and fallback keys


def get_one_time_keys(
    *, user_id: str, device_id: str, key_ids: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Stored one-time keys among ``(algorithm, key_id)`` pairs -> their JSON (one query)."""
    if not key_ids:
        return {}
    wanted = Q()
    for algorithm, key_id in key_ids:
        wanted |= Q(algorithm=algorithm, key_id=key_id)
    return {
        (algorithm, key_id): key_json
        for algorithm, key_id, key_json in OneTimeKey.objects.filter(
            wanted, user_id=user_id, device_id=device_id
        ).values_list("algorithm", "key_id", "key_json")
    }


def insert_one_time_keys(*, user_id: str, device_id: str, keys: Sequence[tuple[str, str, str]]) -> None:
    """``(algorithm, key_id, key_json)`` rows; keys already stored are left as they are."""
    OneTimeKey.objects.bulk_create(
        [
            OneTimeKey(user_id=user_id, device_id=device_id, algorithm=a, key_id=k, key_json=j)
            for a, k, j in keys
        ],
        ignore_conflicts=True,
        batch_size=500,
    )


def set_fallback_key(*, user_id: str, device_id: str, algorithm: str, key_id: str, key_json: str) -> None:
    """Store the device's fallback key for ``algorithm``, replacing the previous one.

    Re-uploading the very key already stored keeps its ``used`` flag: the client
    is only repeating itself, it did not publish a fresh key.
    """
    FallbackKey.objects.bulk_create(
        [
            FallbackKey(
                user_id=user_id, device_id=device_id, algorithm=algorithm, key_id=key_id, key_json=key_json
            )
        ],
        ignore_conflicts=True,
    )
    FallbackKey.objects.filter(user_id=user_id, device_id=device_id, algorithm=algorithm).exclude(
        key_id=key_id, key_json=key_json
    ).update(key_id=key_id, key_json=key_json, used=False)


ClaimRequest = tuple[str, str, str]  # (user_id, device_id, algorithm)
ClaimedKey = tuple[str, str, str, str, str]  # (user_id, device_id, algorithm, key_id, key_json)


def claim_one_time_keys(requests: Sequence[ClaimRequest]) -> list[ClaimedKey]:
    """Remove and return the oldest one-time key of each requested (user, device, algorithm).

    Spec ``POST /keys/claim``: "each one-time key is returned at most once". The
    key leaves the table in the statement that picks it. PostgreSQL: one
    ``DELETE ... RETURNING`` whose picks are ``FOR UPDATE SKIP LOCKED``, so a
    concurrent claim skips a key another transaction is taking and gets the next
    one instead of blocking or failing. SQLite serialises writers, so the same
    DELETE (without row locks, which it has not) is atomic there too.
    """
    wanted = list(dict.fromkeys(requests))
    if not wanted:
        return []
    values = ", ".join(["(%s, %s, %s)"] * len(wanted))
    params: list[Any] = [v for req in wanted for v in req]
    if is_postgres():
        sql = f"""
            DELETE FROM e2e_one_time_keys WHERE id IN (
                SELECT pick.id FROM (VALUES {values}) AS w(user_id, device_id, algorithm)
                CROSS JOIN LATERAL (
                    SELECT k.id FROM e2e_one_time_keys k
                    WHERE k.user_id = w.user_id AND k.device_id = w.device_id AND k.algorithm = w.algorithm
                    ORDER BY k.id LIMIT 1 FOR UPDATE SKIP LOCKED
                ) AS pick
            )
            RETURNING user_id, device_id, algorithm, key_id, key_json
        """  # only placeholders are interpolated into the SQL
    else:
        sql = f"""
            DELETE FROM e2e_one_time_keys WHERE id IN (
                SELECT (
                    SELECT k.id FROM e2e_one_time_keys k
                    WHERE k.user_id = w.column1 AND k.device_id = w.column2 AND k.algorithm = w.column3
                    ORDER BY k.id LIMIT 1
                ) FROM (VALUES {values}) AS w
            )
            RETURNING user_id, device_id, algorithm, key_id, key_json
        """
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return [tuple(row) for row in cur.fetchall()]


def claim_fallback_keys(requests: Sequence[ClaimRequest]) -> list[ClaimedKey]:
    """The fallback keys of these (user, device, algorithm), marked used (they stay for reuse)."""
    if not requests:
        return []
    wanted = Q()
    for user_id, device_id, algorithm in requests:
        wanted |= Q(user_id=user_id, device_id=device_id, algorithm=algorithm)
    rows = list(
        FallbackKey.objects.filter(wanted).values_list(
            "id", "user_id", "device_id", "algorithm", "key_id", "key_json"
        )
    )
    unused = [row[0] for row in rows]
    if unused:
        FallbackKey.objects.filter(id__in=unused, used=False).update(used=True)
    return [(u, d, a, k, j) for _, u, d, a, k, j in rows]


# --------------------------------------------------------------------------- cross-signing keys


@dataclass(frozen=True, slots=True)
class StoredCrossSigningKey:
    user_id: str
    usage: str
    public_key: str
    key: dict[str, Any]


def get_cross_signing_keys(user_ids: Iterable[str], usages: Iterable[str]) -> list[StoredCrossSigningKey]:
    users = sorted(set(user_ids))
    if not users:
        return []
    return [
        StoredCrossSigningKey(user_id, usage, public_key, json.loads(key_json))
        for user_id, usage, public_key, key_json in CrossSigningKey.objects.filter(
            user_id__in=users, usage__in=list(usages)
        ).values_list("user_id", "usage", "public_key", "key_json")
    ]


def get_cross_signing_keys_for_update(user_id: str) -> dict[str, StoredCrossSigningKey]:
    """The user's cross-signing keys by usage, rows locked until the transaction ends."""
    return {
        row.usage: StoredCrossSigningKey(row.user_id, row.usage, row.public_key, json.loads(row.key_json))
        for row in CrossSigningKey.objects.select_for_update().filter(user_id=user_id)
    }


def get_device_ids(*, user_id: str) -> set[str]:
    return set(Device.objects.filter(user__user_id=user_id).values_list("device_id", flat=True))


def delete_cross_signing_key(*, user_id: str, usage: str) -> None:
    CrossSigningKey.objects.filter(user_id=user_id, usage=usage).delete()


def set_cross_signing_key(*, user_id: str, usage: str, public_key: str, key_json: str) -> None:
    CrossSigningKey.objects.update_or_create(
        user_id=user_id,
        usage=usage,
        defaults={"public_key": public_key, "key_json": key_json, "added_ts": now_ms()},
    )


# --------------------------------------------------------------------------- signatures


def get_signatures_on(
    *, target_user_ids: Iterable[str], visible_signers: Iterable[str] | None = None
) -> list[tuple[str, str, str, str, str]]:
    """``(target_user_id, target_key_id, signer_user_id, signer_key_id, signature)`` on these users' keys.

    ``visible_signers``: extra signers (besides each target user themself) whose
    signatures to include.
    """
    users = sorted(set(target_user_ids))
    if not users:
        return []
    signers = Q(signer_user_id=F("target_user_id"))
    if visible_signers:
        signers |= Q(signer_user_id__in=sorted(set(visible_signers)))
    return list(
        CrossSigningSignature.objects.filter(signers, target_user_id__in=users).values_list(
            "target_user_id", "target_key_id", "signer_user_id", "signer_key_id", "signature"
        )
    )


def upsert_signatures(rows: Sequence[tuple[str, str, str, str, str]]) -> None:
    """Store ``(signer_user_id, signer_key_id, target_user_id, target_key_id, signature)`` rows."""
    CrossSigningSignature.objects.bulk_create(
        [
            CrossSigningSignature(
                signer_user_id=signer_user, signer_key_id=signer_key, target_user_id=target_user,
                target_key_id=target_key, signature=signature,
            )
            for signer_user, signer_key, target_user, target_key, signature in rows
        ],
        update_conflicts=True,
        unique_fields=["target_user_id", "target_key_id", "signer_user_id", "signer_key_id"],
        update_fields=["signature"],
    )  # fmt: skip


def delete_signatures_by_signer(*, signer_user_id: str, signer_key_id: str) -> None:
    CrossSigningSignature.objects.filter(signer_user_id=signer_user_id, signer_key_id=signer_key_id).delete()


def delete_signatures_on(*, target_user_id: str, target_key_id: str) -> None:
    CrossSigningSignature.objects.filter(target_user_id=target_user_id, target_key_id=target_key_id).delete()


def delete_signatures_on_other_keys(*, target_user_id: str, keep_key_ids: Sequence[str]) -> None:
    """Forget the signatures on ``target_user_id``'s keys other than ``keep_key_ids`` (a remote
    user's master key was replaced: trust placed in the old one does not pass to the new)."""
    CrossSigningSignature.objects.filter(target_user_id=target_user_id).exclude(
        target_key_id__in=list(keep_key_ids)
    ).delete()


# --------------------------------------------------------------------------- device-list tracking (memberships)


def get_joined_room_nids(*, user_id: str) -> list[int]:
    return list(
        RoomMembership.objects.filter(user_id=user_id, membership="join").values_list("room_id", flat=True)
    )


def get_membership_changes(
    *, user_ids: Sequence[str] | None, room_nids: Sequence[int] | None, after: int, upto: int
) -> list[tuple[str, int, str]]:
    """``(user_id, room_nid, membership)`` of current memberships last changed in ``(after, upto]``."""
    qs = RoomMembership.objects.filter(stream_ordering__gt=after, stream_ordering__lte=upto)
    if user_ids is not None:
        qs = qs.filter(user_id__in=list(user_ids))
    if room_nids is not None:
        if not room_nids:
            return []
        qs = qs.filter(room_id__in=list(room_nids))
    return list(qs.values_list("user_id", "room_id", "membership"))


def get_joined_users(*, room_nids: Sequence[int]) -> set[str]:
    if not room_nids:
        return set()
    return set(
        RoomMembership.objects.filter(room_id__in=list(room_nids), membership="join").values_list(
            "user_id", flat=True
        )
    )

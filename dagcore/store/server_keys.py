"""Other servers' signing keys and ``.well-known`` delegations (see ``dagcore.models.federation``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q

from dagcore.models import RemoteServerKey, ServerSigningKey, WellKnownDelegation


@dataclass(frozen=True)
class StoredServerKey:
    server_name: str
    key_id: str
    #: Unpadded Base64 of the public key.
    verify_key: str
    #: Already capped at 7 days after the fetch (``expired_ts`` for an old key).
    valid_until_ts: int
    expired_ts: int | None
    from_server: str
    fetched_ts: int
    #: The signed response the key came in (canonical JSON).
    key_json: str


def _stored(row: RemoteServerKey) -> StoredServerKey:
    return StoredServerKey(
        server_name=row.server_name,
        key_id=row.key_id,
        verify_key=row.verify_key,
        valid_until_ts=row.valid_until_ts,
        expired_ts=row.expired_ts,
        from_server=row.from_server,
        fetched_ts=row.fetched_ts,
        key_json=row.key_json,
    )


def get_server_keys(*, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], StoredServerKey]:
    """The cached keys among ``(server_name, key_id)`` pairs, in one query."""
    wanted = set(keys)
    if not wanted:
        return {}
    condition = Q()
    for server_name, key_id in wanted:
        condition |= Q(server_name=server_name, key_id=key_id)
    return {(row.server_name, row.key_id): _stored(row) for row in RemoteServerKey.objects.filter(condition)}


def get_keys_of_servers(*, server_names: Iterable[str]) -> list[StoredServerKey]:
    """Every cached key of these servers (a notary query without key IDs asks for all)."""
    names = set(server_names)
    if not names:
        return []
    return [_stored(row) for row in RemoteServerKey.objects.filter(server_name__in=names)]


def store_server_keys(*, keys: Iterable[StoredServerKey]) -> None:
    """Insert or replace keys (the newest fetch wins), in one statement."""
    rows = [
        RemoteServerKey(
            server_name=k.server_name,
            key_id=k.key_id,
            verify_key=k.verify_key,
            valid_until_ts=k.valid_until_ts,
            expired_ts=k.expired_ts,
            from_server=k.from_server,
            fetched_ts=k.fetched_ts,
            key_json=k.key_json,
        )
        for k in keys
    ]
    if not rows:
        return
    RemoteServerKey.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["server_name", "key_id"],
        update_fields=["verify_key", "valid_until_ts", "expired_ts", "from_server", "fetched_ts", "key_json"],
    )


def get_well_known(*, server_name: str, now_ms: int) -> str | None:
    """The cached, unexpired ``m.server`` of ``server_name``: ``""`` for "no delegation", ``None`` if unknown."""
    row = (
        WellKnownDelegation.objects.filter(server_name=server_name, expires_ts__gt=now_ms)
        .values_list("delegated_server", flat=True)
        .first()
    )
    return None if row is None else str(row)


def store_well_known(*, server_name: str, delegated_server: str, expires_ts: int) -> None:
    WellKnownDelegation.objects.bulk_create(
        [
            WellKnownDelegation(
                server_name=server_name, delegated_server=delegated_server, expires_ts=expires_ts
            )
        ],
        update_conflicts=True,
        unique_fields=["server_name"],
        update_fields=["delegated_server", "expires_ts"],
    )


# --------------------------------------------------------------------------- our own keys


@dataclass(frozen=True)
class OwnKey:
    """One of our signing keys (``ServerSigningKey``), detached from the ORM."""

    key_id: str
    verify_key: str
    seed: str | None
    created_ts: int
    expired_ts: int | None
    origin: str


def _own(row: ServerSigningKey) -> OwnKey:
    return OwnKey(
        key_id=row.key_id,
        verify_key=row.verify_key,
        seed=row.seed,
        created_ts=row.created_ts,
        expired_ts=row.expired_ts,
        origin=row.origin,
    )


def list_own_keys() -> list[OwnKey]:
    """Every key of ours, in the order they were added (the current ones have ``expired_ts`` None)."""
    return [_own(row) for row in ServerSigningKey.objects.order_by("id")]


def insert_own_keys_if_none(keys: list[OwnKey]) -> bool:
    """Seed the table (first start): only if it holds no current key. True if it was seeded.

    Several processes may start at once: the unique key ID makes a second seeding a no-op.
    """
    with transaction.atomic():
        if ServerSigningKey.objects.filter(expired_ts__isnull=True).exists():
            return False
        ServerSigningKey.objects.bulk_create([_row(k) for k in keys], ignore_conflicts=True)
    return True


def _row(k: OwnKey) -> ServerSigningKey:
    return ServerSigningKey(
        key_id=k.key_id,
        verify_key=k.verify_key,
        seed=k.seed,
        created_ts=k.created_ts,
        expired_ts=k.expired_ts,
        origin=k.origin,
    )


def replace_current_key(*, new: OwnKey, expire_at: int, old: list[OwnKey] | None = None) -> list[str]:
    """One rotation, atomically: every current key expires at ``expire_at``, ``old`` keys
    (public halves only, e.g. a lost or imported old key) are recorded if unknown, and ``new``
    becomes the current key (replacing a row of the same key ID). Returns the expired key IDs."""
    with transaction.atomic():
        current = list(
            ServerSigningKey.objects.select_for_update()
            .filter(expired_ts__isnull=True)
            .exclude(key_id=new.key_id)
            .values_list("key_id", flat=True)
        )
        ServerSigningKey.objects.filter(key_id__in=current).update(expired_ts=expire_at)
        for k in old or []:
            if k.key_id != new.key_id:
                ServerSigningKey.objects.get_or_create(key_id=k.key_id, defaults=_defaults(k))
        ServerSigningKey.objects.update_or_create(key_id=new.key_id, defaults=_defaults(new))
    return current


def _defaults(k: OwnKey) -> dict[str, object]:
    return {
        "verify_key": k.verify_key,
        "seed": k.seed,
        "created_ts": k.created_ts,
        "expired_ts": k.expired_ts,
        "origin": k.origin,
    }


def forget_private_halves(*, key_ids: list[str]) -> None:
    """Keys whose private half is lost: only their public half stays (published as old keys)."""
    ServerSigningKey.objects.filter(key_id__in=key_ids, expired_ts__isnull=False).update(seed=None)


def release_connection() -> None:
    """Close this thread's database connection (a helper thread giving it back to the pool)."""
    connection.close()

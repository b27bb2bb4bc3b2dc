"""Other servers' signing keys and ``.well-known`` delegations (see ``dagcore.models.federation``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from dagcore.models import RemoteServerKey, WellKnownDelegation


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

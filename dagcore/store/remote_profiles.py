"""The short-lived cache of other servers' answers to profile queries."""

from __future__ import annotations

from dataclasses import dataclass

from dagcore.models import RemoteProfileCache


@dataclass(frozen=True)
class CachedProfile:
    displayname: str | None
    avatar_url: str | None
    fetched_ts: int


def get_cached_profile(*, user_id: str, fetched_after: int) -> CachedProfile | None:
    row = RemoteProfileCache.objects.filter(user_id=user_id, fetched_ts__gt=fetched_after).first()
    if row is None:
        return None
    return CachedProfile(displayname=row.displayname, avatar_url=row.avatar_url, fetched_ts=row.fetched_ts)


def store_profile(*, user_id: str, displayname: str | None, avatar_url: str | None, fetched_ts: int) -> None:
    RemoteProfileCache.objects.update_or_create(
        user_id=user_id,
        defaults={"displayname": displayname, "avatar_url": avatar_url, "fetched_ts": fetched_ts},
    )


def delete_stale_profiles(*, fetched_before: int) -> int:
    deleted, _ = RemoteProfileCache.objects.filter(fetched_ts__lte=fetched_before).delete()
    return deleted

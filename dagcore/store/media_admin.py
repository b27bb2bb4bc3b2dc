"""Queries of media administration: purge selections, avatars, quarantine in bulk, usage.

The bytes are in ``dagcore.media.filestore`` (one file per distinct content, shared by every
row with that SHA-256); these functions only answer which rows and which hashes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, Sum

from dagcore.models import (
    CurrentStateEvent,
    Event,
    LocalMedia,
    MediaThumbnail,
    RemoteMedia,
    RemoteMediaThumbnail,
    RoomMembership,
    User,
)

_MXC = re.compile(r"mxc://([A-Za-z0-9.\-:\[\]]+)/([A-Za-z0-9_\-]+)")
_CHUNK = 1000


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def mxc_uris_in(text: str) -> set[tuple[str, str]]:
    """Every ``(server, media ID)`` of the ``mxc://`` URIs in a text (an event's JSON)."""
    return set(_MXC.findall(text))


# --------------------------------------------------------------------------- avatars


def avatar_media_ids(*, server_name: str) -> set[str]:
    """Our media IDs used as an avatar: users' profiles, per-room member avatars and the current
    ``m.room.avatar`` of every room (Synapse's ``keep_profiles``)."""
    uris: set[str | None] = set()
    uris.update(User.objects.filter(avatar_url__startswith="mxc://").values_list("avatar_url", flat=True))
    uris.update(
        RoomMembership.objects.filter(avatar_url__startswith="mxc://")
        .values_list("avatar_url", flat=True)
        .distinct()
    )
    out = {mid for uri in uris if uri for srv, mid in mxc_uris_in(uri) if srv == server_name}
    for text in CurrentStateEvent.objects.filter(type="m.room.avatar", state_key="").values_list(
        "event__json", flat=True
    ):
        out.update(mid for srv, mid in mxc_uris_in(text) if srv == server_name)
    return out


# --------------------------------------------------------------------------- purge selections


@dataclass(frozen=True)
class Candidate:
    pk: int
    media_id: str
    sha256: str
    size: int


def select_local_purge(*, before_ts: int, size_gt: int, exclude_media_ids: set[str]) -> list[Candidate]:
    """Uploaded local media last accessed before ``before_ts`` and larger than ``size_gt``,
    neither quarantined (kept as evidence, and so the same bytes stay blocked) nor protected,
    as Synapse's ``delete_old_local_media``."""
    rows = (
        LocalMedia.objects.filter(
            sha256__isnull=False,
            last_access_ts__lt=before_ts,
            size__gt=size_gt,
            quarantined=False,
            safe_from_quarantine=False,
        )
        .order_by("last_access_ts", "id")
        .values_list("id", "media_id", "sha256", "size")
    )
    return [
        Candidate(pk, mid, sha or "", size or 0)
        for pk, mid, sha, size in rows
        if mid not in exclude_media_ids
    ]


def select_remote_purge(*, before_ts: int, size_gt: int) -> list[Candidate]:
    """Cached remote media not read since ``before_ts``; quarantined copies are kept (as Synapse)."""
    rows = (
        RemoteMedia.objects.filter(last_access_ts__lt=before_ts, size__gt=size_gt, quarantined=False)
        .order_by("last_access_ts", "id")
        .values_list("id", "media_id", "sha256", "size", "server_name")
    )
    return [Candidate(pk, f"{srv}/{mid}", sha, size) for pk, mid, sha, size, srv in rows]


def local_candidates(pks: list[int]) -> list[Candidate]:
    rows = LocalMedia.objects.filter(pk__in=pks, sha256__isnull=False).values_list(
        "id", "media_id", "sha256", "size"
    )
    return [Candidate(pk, mid, sha or "", size or 0) for pk, mid, sha, size in rows]


def blobs_freed_by(*, local_pks: list[int], remote_pks: list[int]) -> dict[str, int]:
    """``sha256 -> bytes`` of the files no row would use once these rows (and their thumbnails)
    are gone: what a purge of exactly these rows frees. The same computation serves the dry run."""
    sizes: dict[str | None, int | None] = {}
    local, remote = set(local_pks), set(remote_pks)
    for chunk in _chunks(sorted(local)):
        sizes.update(
            LocalMedia.objects.filter(pk__in=chunk, sha256__isnull=False).values_list("sha256", "size")
        )
        sizes.update(MediaThumbnail.objects.filter(media_id__in=chunk).values_list("sha256", "size"))
    for chunk in _chunks(sorted(remote)):
        sizes.update(RemoteMedia.objects.filter(pk__in=chunk).values_list("sha256", "size"))
        sizes.update(RemoteMediaThumbnail.objects.filter(media_id__in=chunk).values_list("sha256", "size"))
    # Who else uses these bytes, found per chunk of hashes and compared here, so no query
    # carries the (possibly huge) list of rows being purged.
    used: set[str | None] = set()
    for chunk in _chunks(sorted(h for h in sizes if h)):
        users = (
            (LocalMedia.objects.filter(sha256__in=chunk).values_list("sha256", "id"), local),
            (MediaThumbnail.objects.filter(sha256__in=chunk).values_list("sha256", "media_id"), local),
            (RemoteMedia.objects.filter(sha256__in=chunk).values_list("sha256", "id"), remote),
            (RemoteMediaThumbnail.objects.filter(sha256__in=chunk).values_list("sha256", "media_id"), remote),
        )
        for rows, purged in users:
            used.update(sha for sha, owner in rows if owner not in purged)
    return {h: int(s or 0) for h, s in sizes.items() if h and h not in used}


# --------------------------------------------------------------------------- protection, quarantine


def set_protected(*, media_id: str, protected: bool) -> bool:
    return LocalMedia.objects.filter(media_id=media_id).update(safe_from_quarantine=protected) == 1


def quarantine_local(*, media_ids: Iterable[str] | None = None, uploader: str | None = None,
                     by: str) -> int:  # fmt: skip
    """Quarantine local media by IDs or uploader; protected media is skipped (Synapse's
    ``safe_from_quarantine``). The same bytes elsewhere are quarantined too. Returns how many
    rows were newly quarantined."""
    base = LocalMedia.objects.filter(quarantined=False, safe_from_quarantine=False)
    if uploader is not None:
        base = base.filter(uploader=uploader)
    batches = [base] if media_ids is None else [base.filter(media_id__in=c) for c in _chunks(list(media_ids))]
    count = 0
    with transaction.atomic():
        for qs in batches:
            hashes = {h for h in qs.exclude(sha256__isnull=True).values_list("sha256", flat=True) if h}
            count += qs.update(quarantined=True, quarantined_by=by)
            count += _quarantine_hashes(hashes, by=by)
    return count


def quarantine_remote(*, keys: Iterable[tuple[str, str]], by: str) -> int:
    """Quarantine cached copies of other servers' media (and the same bytes elsewhere)."""
    wanted = list(keys)
    count = 0
    with transaction.atomic():
        for start in range(0, len(wanted), 100):  # one OR of 100 pairs per statement
            condition = Q()
            for server_name, media_id in wanted[start : start + 100]:
                condition |= Q(server_name=server_name, media_id=media_id)
            qs = RemoteMedia.objects.filter(condition, quarantined=False)
            hashes = set(qs.values_list("sha256", flat=True))
            count += qs.update(quarantined=True, quarantined_by=by)
            count += _quarantine_hashes(hashes, by=by)
    return count


def _quarantine_hashes(hashes: set[str], *, by: str) -> int:
    """Other rows holding the same bytes (Synapse >= 1.128: quarantine follows the content)."""
    n = 0
    for chunk in _chunks(sorted(hashes)):
        n += LocalMedia.objects.filter(
            sha256__in=chunk, quarantined=False, safe_from_quarantine=False
        ).update(quarantined=True, quarantined_by=by)
        n += RemoteMedia.objects.filter(sha256__in=chunk, quarantined=False).update(
            quarantined=True, quarantined_by=by
        )
    return n


def room_media(*, room_id: str) -> set[tuple[str, str]]:
    """``(server, media ID)`` of every ``mxc://`` URI in the room's events we hold (unencrypted
    content only: an encrypted file's URI is inside the ciphertext, as for Synapse)."""
    found: set[tuple[str, str]] = set()
    texts = Event.objects.filter(room__room_id=room_id, json__contains="mxc://").values_list(
        "json", flat=True
    )
    for text in texts.iterator(chunk_size=500):
        found |= mxc_uris_in(text)
    return found


# --------------------------------------------------------------------------- listing, usage

USAGE_ORDER = {"user_id": "uploader", "displayname": "displayname", "media_length": "media_length",
               "media_count": "media_count"}  # fmt: skip


def media_usage(
    *,
    order_by: str,
    backwards: bool,
    offset: int,
    limit: int,
    from_ts: int | None,
    until_ts: int | None,
    search_term: str | None,
) -> tuple[list[dict[str, Any]], int]:
    """Per local user: how many media they uploaded and their bytes (Synapse's statistics API)."""
    qs = LocalMedia.objects.filter(sha256__isnull=False)
    if from_ts is not None:
        qs = qs.filter(created_ts__gte=from_ts)
    if until_ts is not None:
        qs = qs.filter(created_ts__lte=until_ts)
    names = dict(User.objects.values_list("user_id", "displayname"))
    grouped = list(qs.values("uploader").annotate(media_count=Count("id"), media_length=Sum("size")))
    rows = [
        {
            "user_id": g["uploader"],
            "displayname": names.get(g["uploader"]),
            "media_count": int(g["media_count"]),
            "media_length": int(g["media_length"] or 0),
        }
        for g in grouped
        if g["uploader"] in names
    ]
    if search_term:
        term = search_term.lower()
        rows = [
            r for r in rows
            if term in str(r["user_id"])[1:].split(":", 1)[0].lower() or term in str(r["displayname"] or "").lower()
        ]  # fmt: skip
    key = order_by
    rows.sort(
        key=lambda r: (r[key] is None, r[key] if r[key] is not None else "", r["user_id"]), reverse=backwards
    )
    return rows[offset : offset + limit], len(rows)


def get_remote_media_row(*, server_name: str, media_id: str) -> RemoteMedia | None:
    return RemoteMedia.objects.filter(server_name=server_name, media_id=media_id).first()


def local_pks_of(media_ids: Iterable[str]) -> list[int]:
    return list(LocalMedia.objects.filter(media_id__in=list(media_ids)).values_list("id", flat=True))

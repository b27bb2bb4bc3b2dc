"""Local media, thumbnails and URL preview cache rows (the bytes are in ``dagcore.media.filestore``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from dagcore.clock import now_ms
from dagcore.models import LocalMedia, MediaThumbnail, RemoteMedia, RemoteMediaThumbnail, UrlPreview

#: ``last_access_ts`` is refreshed at most this often (a download is a read, not a write).
ACCESS_TOUCH_INTERVAL_MS = 10 * 60 * 1000


# --------------------------------------------------------------------------- local media


def _our_server_name() -> str:
    # Not ``dagcore.server_keys.get_server_name``: that module reads our keys through the store.
    return str(settings.SERVER_NAME)


def get_local_media(media_id: str) -> LocalMedia | None:
    return LocalMedia.objects.filter(media_id=media_id).first()


def insert_local_media(
    *,
    media_id: str,
    uploader: str,
    content_type: str,
    upload_name: str | None,
    sha256: str,
    size: int,
    authenticated: bool,
    width: int | None = None,
    height: int | None = None,
) -> LocalMedia:
    """A complete upload. Bytes equal to quarantined content are quarantined too."""
    now = now_ms()
    return LocalMedia.objects.create(
        media_id=media_id,
        uploader=uploader,
        content_type=content_type,
        upload_name=upload_name,
        sha256=sha256,
        size=size,
        created_ts=now,
        uploaded_ts=now,
        last_access_ts=now,
        authenticated=authenticated,
        quarantined=is_content_quarantined(sha256),
        width=width,
        height=height,
    )


def insert_pending_media(*, media_id: str, uploader: str, expires_ts: int, authenticated: bool) -> LocalMedia:
    now = now_ms()
    return LocalMedia.objects.create(
        media_id=media_id,
        uploader=uploader,
        created_ts=now,
        last_access_ts=now,
        unused_expires_ts=expires_ts,
        authenticated=authenticated,
    )


def count_pending_media(*, uploader: str, now: int) -> int:
    """Created, not yet uploaded and not expired (spec: "pending media uploads")."""
    return LocalMedia.objects.filter(
        uploader=uploader, sha256__isnull=True, unused_expires_ts__gt=now
    ).count()


def complete_pending_media(
    *,
    media_id: str,
    content_type: str,
    upload_name: str | None,
    sha256: str,
    size: int,
    width: int | None = None,
    height: int | None = None,
) -> bool:
    """Fill a pending row once: False if it got content meanwhile (a concurrent PUT)."""
    now = now_ms()
    updated = LocalMedia.objects.filter(media_id=media_id, sha256__isnull=True).update(
        content_type=content_type,
        upload_name=upload_name,
        sha256=sha256,
        size=size,
        uploaded_ts=now,
        last_access_ts=now,
        unused_expires_ts=None,
        quarantined=is_content_quarantined(sha256),
        width=width,
        height=height,
    )
    return updated == 1


def touch_media_access(media: LocalMedia, *, now: int) -> None:
    if now - media.last_access_ts >= ACCESS_TOUCH_INTERVAL_MS:
        LocalMedia.objects.filter(pk=media.pk).update(last_access_ts=now)
        media.last_access_ts = now


def is_content_quarantined(sha256: str) -> bool:
    """Whether these bytes are quarantined anywhere here (ours, or a cached copy of another
    server's): an upload of the same bytes is then quarantined too (as Synapse >= 1.128)."""
    return (
        LocalMedia.objects.filter(sha256=sha256, quarantined=True).exists()
        or RemoteMedia.objects.filter(sha256=sha256, quarantined=True).exists()
    )


# --------------------------------------------------------------------------- quarantine (Politburo)


def quarantine_media(*, server_name: str, media_id: str, quarantined_by: str | None = None) -> bool:
    """Never serve this item again (404), nor new uploads of the same bytes. False if unknown.

    Media of other servers is quarantined in the remote-media cache (never fetched again
    while the row stays).
    """
    if server_name != _our_server_name():
        updated = RemoteMedia.objects.filter(server_name=server_name, media_id=media_id).update(
            quarantined=True, quarantined_by=quarantined_by
        )
        return updated == 1
    updated = LocalMedia.objects.filter(media_id=media_id).update(
        quarantined=True, quarantined_by=quarantined_by
    )
    return updated == 1


def unquarantine_media(*, server_name: str, media_id: str) -> bool:
    if server_name != _our_server_name():
        updated = RemoteMedia.objects.filter(server_name=server_name, media_id=media_id).update(
            quarantined=False, quarantined_by=None
        )
        return updated == 1
    updated = LocalMedia.objects.filter(media_id=media_id).update(quarantined=False, quarantined_by=None)
    return updated == 1


# --------------------------------------------------------------------------- thumbnails


def _thumbnails_of(media: LocalMedia | RemoteMedia) -> Any:
    """The thumbnail rows of local or cached remote media (one table each, the same columns)."""
    if isinstance(media, RemoteMedia):
        return RemoteMediaThumbnail.objects.filter(media=media)
    return MediaThumbnail.objects.filter(media=media)


def get_thumbnail(
    *, media: LocalMedia | RemoteMedia, target_width: int, target_height: int, method: str, animated: bool
) -> MediaThumbnail | RemoteMediaThumbnail | None:
    row: MediaThumbnail | RemoteMediaThumbnail | None = (
        _thumbnails_of(media)
        .filter(target_width=target_width, target_height=target_height, method=method, animated=animated)
        .first()
    )
    return row


def get_thumbnails(media: LocalMedia) -> list[MediaThumbnail]:
    return list(MediaThumbnail.objects.filter(media=media).order_by("width", "height"))


def count_thumbnails(media: LocalMedia | RemoteMedia) -> int:
    return int(_thumbnails_of(media).count())


@dataclass(frozen=True)
class NewThumbnail:
    target_width: int
    target_height: int
    method: str
    animated: bool
    width: int
    height: int
    content_type: str
    sha256: str
    size: int


def insert_thumbnail(
    *, media: LocalMedia | RemoteMedia, thumb: NewThumbnail
) -> MediaThumbnail | RemoteMediaThumbnail:
    """Store a thumbnail row; if another process stored the same one first, return theirs."""
    try:
        with transaction.atomic():
            row: MediaThumbnail | RemoteMediaThumbnail = _thumbnails_of(media).create(
                media=media,
                target_width=thumb.target_width,
                target_height=thumb.target_height,
                method=thumb.method,
                animated=thumb.animated,
                width=thumb.width,
                height=thumb.height,
                content_type=thumb.content_type,
                sha256=thumb.sha256,
                size=thumb.size,
                created_ts=now_ms(),
            )
            return row
    except IntegrityError:
        existing = get_thumbnail(
            media=media,
            target_width=thumb.target_width,
            target_height=thumb.target_height,
            method=thumb.method,
            animated=thumb.animated,
        )
        if existing is None:
            raise
        return existing


# --------------------------------------------------------------------------- retention


def get_unaccessed_media(
    *, before_ts: int, limit: int, keep: frozenset[str] = frozenset()
) -> list[LocalMedia]:
    """Uploaded local media not downloaded since ``before_ts`` (oldest first). Quarantined and
    protected media are kept, as by Synapse's media retention (and ``manage.py purge_media``),
    and so are the media IDs in ``keep`` (avatars)."""
    return list(
        LocalMedia.objects.filter(
            sha256__isnull=False, last_access_ts__lt=before_ts, quarantined=False, safe_from_quarantine=False
        )
        .exclude(media_id__in=keep)
        .order_by("last_access_ts")[:limit]
    )


def get_expired_pending_media(*, now: int, limit: int) -> list[LocalMedia]:
    return list(LocalMedia.objects.filter(sha256__isnull=True, unused_expires_ts__lte=now)[:limit])


def delete_local_media(media_pks: list[int]) -> set[str]:
    """Delete rows (and their thumbnail rows); returns the content hashes they referenced."""
    hashes = set(
        LocalMedia.objects.filter(pk__in=media_pks, sha256__isnull=False).values_list("sha256", flat=True)
    )
    hashes |= set(MediaThumbnail.objects.filter(media_id__in=media_pks).values_list("sha256", flat=True))
    with transaction.atomic():
        MediaThumbnail.objects.filter(media_id__in=media_pks).delete()
        LocalMedia.objects.filter(pk__in=media_pks).delete()
    return {h for h in hashes if h}


def unreferenced_hashes(hashes: set[str]) -> set[str]:
    """Those of ``hashes`` no media or thumbnail row points at any more."""
    if not hashes:
        return set()
    used = set(LocalMedia.objects.filter(sha256__in=hashes).values_list("sha256", flat=True))
    used |= set(MediaThumbnail.objects.filter(sha256__in=hashes).values_list("sha256", flat=True))
    used |= set(RemoteMedia.objects.filter(sha256__in=hashes).values_list("sha256", flat=True))
    used |= set(RemoteMediaThumbnail.objects.filter(sha256__in=hashes).values_list("sha256", flat=True))
    return hashes - used


# --------------------------------------------------------------------------- remote media cache


def get_remote_media(*, server_name: str, media_id: str) -> RemoteMedia | None:
    return RemoteMedia.objects.filter(server_name=server_name, media_id=media_id).first()


def insert_remote_media(
    *,
    server_name: str,
    media_id: str,
    content_type: str,
    upload_name: str | None,
    sha256: str,
    size: int,
) -> RemoteMedia:
    """Cache a fetched item; if another request cached it first, return that row.
    Bytes equal to quarantined content are quarantined too."""
    now = now_ms()
    try:
        with transaction.atomic():
            return RemoteMedia.objects.create(
                server_name=server_name,
                media_id=media_id,
                content_type=content_type,
                upload_name=upload_name,
                sha256=sha256,
                size=size,
                created_ts=now,
                last_access_ts=now,
                quarantined=is_content_quarantined(sha256),
            )
    except IntegrityError:
        existing = get_remote_media(server_name=server_name, media_id=media_id)
        if existing is None:
            raise
        return existing


def touch_remote_media_access(media: RemoteMedia, *, now: int) -> None:
    if now - media.last_access_ts >= ACCESS_TOUCH_INTERVAL_MS:
        RemoteMedia.objects.filter(pk=media.pk).update(last_access_ts=now)
        media.last_access_ts = now


def get_unaccessed_remote_media(*, before_ts: int, limit: int) -> list[RemoteMedia]:
    """Cached remote media none of our users read since ``before_ts`` (oldest first)."""
    # Quarantined copies stay (as Synapse): dropping one would let the next request fetch it again.
    return list(
        RemoteMedia.objects.filter(last_access_ts__lt=before_ts, quarantined=False).order_by(
            "last_access_ts"
        )[:limit]
    )


def delete_remote_media(media_pks: list[int]) -> set[str]:
    """Delete cached remote rows (and their thumbnails); returns the content hashes they referenced."""
    hashes = set(RemoteMedia.objects.filter(pk__in=media_pks).values_list("sha256", flat=True))
    hashes |= set(
        RemoteMediaThumbnail.objects.filter(media_id__in=media_pks).values_list("sha256", flat=True)
    )
    with transaction.atomic():
        RemoteMediaThumbnail.objects.filter(media_id__in=media_pks).delete()
        RemoteMedia.objects.filter(pk__in=media_pks).delete()
    return {h for h in hashes if h}


# --------------------------------------------------------------------------- URL previews


def _url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def get_cached_preview(*, url: str, now: int) -> dict[str, Any] | None:
    row = (
        UrlPreview.objects.filter(url_hash=_url_hash(url), expires_ts__gt=now)
        .order_by("-created_ts")
        .only("url", "og")
        .first()
    )
    if row is None or row.url != url:
        return None
    og: dict[str, Any] = row.og
    return og


def store_preview(*, url: str, og: dict[str, Any], expires_ts: int) -> None:
    UrlPreview.objects.create(
        url_hash=_url_hash(url), url=url, og=og, created_ts=now_ms(), expires_ts=expires_ts
    )


def delete_expired_previews(*, now: int) -> int:
    deleted, _ = UrlPreview.objects.filter(Q(expires_ts__lte=now)).delete()
    return deleted

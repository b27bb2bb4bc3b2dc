"""The content repository: uploads, downloads, thumbnails, URL previews, retention.

Spec: https://spec.matrix.org/v1.19/client-server-api/#content-repository
(authenticated media since v1.11; the legacy ``/_matrix/media/v3`` endpoints).

Media views are asynchronous (Tribune runs synchronous views on one shared
thread, so a slow upload, a big thumbnail or a URL preview waiting on a remote
site would stall every other request). The ``async`` actions here therefore
run database work with ``sync_to_async`` (that shared thread, one connection)
and the heavy, database-free work — hashing and writing files, Pillow,
network — in worker threads (``asyncio.to_thread``) or on the event loop.
The synchronous actions are what the Celery tasks call.

Every name that comes from a request (server name, media ID) is checked
against its grammar before anything else happens, and neither ever becomes
a path: files are named by the SHA-256 of their content.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from dagcore.clock import duration_ms, now_ms
from dagcore.http.errors import MatrixError
from dagcore.media import content_types, thumbnailer
from dagcore.media import preview as preview_fetcher
from dagcore.media.filestore import StoredBlob, TooLarge, get_file_store
from dagcore.media.ids import is_valid_media_id, mxc_uri, new_media_id
from dagcore.models import LocalMedia, MediaThumbnail, RemoteMedia, RemoteMediaThumbnail
from dagcore.protocol.identifiers import is_valid_server_name
from dagcore.server_keys import get_server_name
from dagcore.store import media as media_store
from dagcore.store import media_admin as media_admin_store
from dagcore.taskqueue.dispatch import enqueue

logger = logging.getLogger(__name__)

#: Spec (POST /_matrix/media/v1/create): "The recommended default expiration is 24 hours".
UNUSED_EXPIRY_MS = 24 * 3600 * 1000
#: Spec: servers "should limit the number of concurrent pending media uploads" (429). As Synapse.
MAX_PENDING_UPLOADS = 5
#: Thumbnails stored per item (standard sizes always); further sizes are rendered, served
#: and forgotten, so a client walking through sizes cannot fill the disk.
MAX_STORED_THUMBNAILS = 32
#: How long a URL preview is reused for everyone.
PREVIEW_CACHE_MS = 3600 * 1000
#: Thumbnails rendered at once per process: a decode may take up to ``max_image_pixels`` x 4
#: bytes of memory, so concurrency is bounded rather than left to the thread pool's size.
_RENDER_SLOTS = threading.BoundedSemaphore(4)


def _conf(name: str) -> Any:
    return getattr(settings.DAGMA, name)


def max_upload_size() -> int:
    return int(_conf("max_upload_size"))


def get_media_config() -> dict[str, Any]:
    """``GET /_matrix/client/v1/media/config``: the upload limit (``m.upload.size``)."""
    return {"m.upload.size": max_upload_size()}


# --------------------------------------------------------------------------- names


def check_media_location(*, server_name: str, media_id: str) -> None:
    """Grammar of the two halves of an ``mxc://`` URI, before any lookup.

    A bad server name is a bad request (400 M_INVALID_PARAM); a media ID outside
    ``[A-Za-z0-9_-]{1,255}`` cannot name any media (404 M_NOT_FOUND, the status
    the spec gives PUT /upload for "an invalid MXC ID").
    """
    if not is_valid_server_name(server_name):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid server name")
    if not is_valid_media_id(media_id):
        raise MatrixError(404, "M_NOT_FOUND", "Invalid media ID: media IDs are [A-Za-z0-9_-]")


def _not_found() -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", "Media not found")


# --------------------------------------------------------------------------- uploads


@dataclass(frozen=True)
class UploadMetadata:
    content_type: str
    upload_name: str | None


def check_upload_request(
    *, content_type_header: str | None, filename: str | None, content_length: str | None
) -> UploadMetadata:
    """Headers and query of an upload, all checked before a byte of the body is read.

    ``Content-Length`` larger than ``max_upload_size`` is refused at once (413);
    the body is read with the same cap, for chunked uploads without a length.
    """
    if content_length:
        if not (content_length.strip().isascii() and content_length.strip().isdigit()):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid Content-Length")
        if int(content_length) > max_upload_size():
            raise MatrixError(413, "M_TOO_LARGE", f"Uploads are limited to {max_upload_size()} bytes")
    try:
        content_type = content_types.normalize_content_type(content_type_header)
    except ValueError as exc:
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid Content-Type: {exc}") from None
    try:
        upload_name = content_types.check_upload_filename(filename)
    except ValueError as exc:
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid filename: {exc}") from None
    return UploadMetadata(content_type=content_type, upload_name=upload_name)


def store_upload_body(*, read: Callable[[int], bytes]) -> StoredBlob:
    """Stream the body into the file store with the size cap (no database: runs off-thread)."""
    try:
        return get_file_store().write_stream(read, max_size=max_upload_size())
    except TooLarge:
        raise MatrixError(413, "M_TOO_LARGE", f"Uploads are limited to {max_upload_size()} bytes") from None


def probe_image_size(*, sha256: str, content_type: str) -> tuple[int, int] | None:
    """Pixel size of an uploaded image (header only), for previews; None for anything else."""
    if content_types.essence(content_type) not in thumbnailer.THUMBNAILABLE_CONTENT_TYPES:
        return None
    try:
        info = thumbnailer.probe(
            get_file_store().blob_path(sha256), max_pixels=int(_conf("max_image_pixels"))
        )
    except thumbnailer.ThumbnailError:
        return None
    return info.width, info.height


def do_record_upload(
    *, uploader: str, meta: UploadMetadata, blob: StoredBlob, size: tuple[int, int] | None
) -> str:
    """The row of a new upload; queues its standard thumbnails. Returns the ``mxc://`` URI."""
    media = media_store.insert_local_media(
        media_id=new_media_id(),
        uploader=uploader,
        content_type=meta.content_type,
        upload_name=meta.upload_name,
        sha256=blob.sha256,
        size=blob.size,
        authenticated=bool(_conf("enable_authenticated_media")),
        width=size[0] if size else None,
        height=size[1] if size else None,
    )
    _queue_thumbnails(media)
    return mxc_uri(server_name=get_server_name(), media_id=media.media_id)


def _queue_thumbnails(media: LocalMedia) -> None:
    if content_types.essence(media.content_type) not in thumbnailer.THUMBNAILABLE_CONTENT_TYPES:
        return
    if media.width is None or media.quarantined:
        return  # not a decodable image (or too large): nothing to pre-generate
    try:
        enqueue("dagcore.tasks.media.generate_thumbnails", media.media_id)
    except Exception:  # a broker hiccup must not fail the upload: thumbnails are also made on demand
        logger.exception("could not queue thumbnails for %s", media.media_id)


async def check_upload_media(
    *,
    uploader: str,
    content_type_header: str | None,
    filename: str | None,
    content_length: str | None,
    read: Callable[[int], bytes],
) -> str:
    """``POST /_matrix/media/v3/upload``: store the body, return its new ``mxc://`` URI."""
    meta = check_upload_request(
        content_type_header=content_type_header, filename=filename, content_length=content_length
    )
    blob = await asyncio.to_thread(store_upload_body, read=read)
    size = await asyncio.to_thread(probe_image_size, sha256=blob.sha256, content_type=meta.content_type)
    return await sync_to_async(do_record_upload)(uploader=uploader, meta=meta, blob=blob, size=size)


# --------------------------------------------------------------------------- asynchronous uploads


def do_create_pending_media(*, uploader: str) -> dict[str, Any]:
    """``POST /_matrix/media/v1/create``: reserve an ``mxc://`` URI for a later PUT."""
    now = now_ms()
    pending = media_store.count_pending_media(uploader=uploader, now=now)
    if pending >= MAX_PENDING_UPLOADS:
        raise MatrixError(
            429,
            "M_LIMIT_EXCEEDED",
            f"Too many pending uploads (at most {MAX_PENDING_UPLOADS}); upload or wait for them to expire",
            retry_after_ms=60_000,
        )
    expires = now + UNUSED_EXPIRY_MS
    media = media_store.insert_pending_media(
        media_id=new_media_id(),
        uploader=uploader,
        expires_ts=expires,
        authenticated=bool(_conf("enable_authenticated_media")),
    )
    return {
        "content_uri": mxc_uri(server_name=get_server_name(), media_id=media.media_id),
        "unused_expires_at": expires,
    }


def access_pending_media(*, server_name: str, media_id: str, uploader: str) -> LocalMedia:
    """The pending row a PUT may fill: only its creator's, once, before it expires."""
    check_media_location(server_name=server_name, media_id=media_id)
    if server_name != get_server_name():
        raise _not_found()
    media = media_store.get_local_media(media_id)
    if media is None:
        raise _not_found()
    if media.uploader != uploader:
        raise MatrixError(403, "M_FORBIDDEN", "Only the creator of this media ID can upload to it")
    if media.sha256 is not None:
        raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
    if media.unused_expires_ts is not None and media.unused_expires_ts <= now_ms():
        raise MatrixError(404, "M_NOT_FOUND", "This media ID has expired")
    return media


def do_complete_pending_media(
    *, media: LocalMedia, meta: UploadMetadata, blob: StoredBlob, size: tuple[int, int] | None
) -> None:
    done = media_store.complete_pending_media(
        media_id=media.media_id,
        content_type=meta.content_type,
        upload_name=meta.upload_name,
        sha256=blob.sha256,
        size=blob.size,
        width=size[0] if size else None,
        height=size[1] if size else None,
    )
    if not done:  # another PUT won the race
        raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded")
    refreshed = media_store.get_local_media(media.media_id)
    if refreshed is not None:
        _queue_thumbnails(refreshed)


async def check_upload_pending_media(
    *,
    server_name: str,
    media_id: str,
    uploader: str,
    content_type_header: str | None,
    filename: str | None,
    content_length: str | None,
    read: Callable[[int], bytes],
) -> None:
    """``PUT /_matrix/media/v3/upload/{serverName}/{mediaId}``."""
    meta = check_upload_request(
        content_type_header=content_type_header, filename=filename, content_length=content_length
    )
    media = await sync_to_async(access_pending_media)(
        server_name=server_name, media_id=media_id, uploader=uploader
    )
    blob = await asyncio.to_thread(store_upload_body, read=read)
    size = await asyncio.to_thread(probe_image_size, sha256=blob.sha256, content_type=meta.content_type)
    await sync_to_async(do_complete_pending_media)(media=media, meta=meta, blob=blob, size=size)


# --------------------------------------------------------------------------- downloads


@dataclass(frozen=True)
class MediaContent:
    """What a download or thumbnail answer serves: a blob of the file store (or bytes just
    rendered, ``data``) and its type."""

    path: Path | None
    size: int
    content_type: str
    upload_name: str | None = None
    data: bytes | None = None


def access_local_media(*, server_name: str, media_id: str, legacy: bool) -> LocalMedia:
    """Media a download may serve: local, uploaded, not quarantined, and — on the legacy
    unauthenticated endpoints — uploaded before authenticated media was enforced."""
    check_media_location(server_name=server_name, media_id=media_id)
    if server_name != get_server_name():
        # Other servers' media is served by ``dagcore.actions.remote_media``, not from here.
        raise _not_found()
    media = media_store.get_local_media(media_id)
    if media is None or media.quarantined:
        raise _not_found()
    if legacy and media.authenticated:
        # Spec v1.11: the legacy endpoints MAY 404 media uploaded after the "freeze".
        raise _not_found()
    if media.sha256 is None:
        if media.unused_expires_ts is not None and media.unused_expires_ts <= now_ms():
            raise _not_found()
        # We answer at once rather than holding a connection for ``timeout_ms`` (the spec allows it).
        raise MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
    media_store.touch_media_access(media, now=now_ms())
    return media


def _content_of(media: LocalMedia) -> MediaContent:
    assert media.sha256 is not None and media.size is not None
    path = get_file_store().blob_path(media.sha256)
    if not path.is_file():
        logger.error("media %s: content %s missing from the store", media.media_id, media.sha256)
        raise _not_found()
    return MediaContent(
        path=path, size=media.size, content_type=media.content_type, upload_name=media.upload_name
    )


def get_download(*, server_name: str, media_id: str, legacy: bool) -> MediaContent:
    return _content_of(access_local_media(server_name=server_name, media_id=media_id, legacy=legacy))


# --------------------------------------------------------------------------- thumbnails


@dataclass(frozen=True)
class ThumbnailRequest:
    width: int
    height: int
    method: str
    animated: bool


def check_thumbnail_request(
    *, width: str | None, height: str | None, method: str | None, animated: str | None
) -> ThumbnailRequest:
    """Query parameters of a thumbnail request (clamped, see ``thumbnailer.MAX_DIMENSION``)."""
    if width is None or height is None:
        raise MatrixError(400, "M_MISSING_PARAM", "width and height are required")
    dims = []
    for name, value in (("width", width), ("height", height)):
        if not re.fullmatch(r"[0-9]{1,9}", value) or int(value) < 1:
            raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be a positive integer")
        dims.append(int(value))
    method = method or "scale"
    if method not in thumbnailer.METHODS:
        raise MatrixError(400, "M_INVALID_PARAM", "method must be scale or crop")
    if animated not in (None, "true", "false"):
        raise MatrixError(400, "M_INVALID_PARAM", "animated must be true or false")
    w, h = thumbnailer.clamp_dimensions(dims[0], dims[1])
    return ThumbnailRequest(width=w, height=h, method=method, animated=animated == "true")


def choose_standard_size(request: ThumbnailRequest) -> ThumbnailRequest:
    """With ``dynamic_thumbnails: false``: the smallest standard size of that method covering
    the request, else the largest (the pre-generated ones are all we make)."""
    same_method = [s for s in thumbnailer.STANDARD_THUMBNAILS if s.method == request.method]
    covering = [s for s in same_method if s.width >= request.width and s.height >= request.height]
    pick = (
        min(covering, key=lambda s: s.width * s.height)
        if covering
        else max(same_method, key=lambda s: s.width * s.height)
    )
    return ThumbnailRequest(
        width=pick.width, height=pick.height, method=pick.method, animated=request.animated
    )


def _cannot_thumbnail() -> MatrixError:
    # The spec's example for this case (400 on the thumbnail endpoints).
    return MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content")


def access_thumbnail_source(
    *, server_name: str, media_id: str, legacy: bool
) -> tuple[LocalMedia, MediaContent]:
    media = access_local_media(server_name=server_name, media_id=media_id, legacy=legacy)
    if content_types.essence(media.content_type) not in thumbnailer.THUMBNAILABLE_CONTENT_TYPES:
        raise _cannot_thumbnail()
    return media, _content_of(media)


def _stored_thumbnail(media: LocalMedia | RemoteMedia, request: ThumbnailRequest) -> MediaContent | None:
    row = media_store.get_thumbnail(
        media=media,
        target_width=request.width,
        target_height=request.height,
        method=request.method,
        animated=request.animated,
    )
    if row is None:
        return None
    path = get_file_store().blob_path(row.sha256)
    if not path.is_file():
        return None
    return MediaContent(path=path, size=row.size, content_type=row.content_type)


def render_thumbnail(*, source: Path, request: ThumbnailRequest) -> thumbnailer.Thumbnail:
    """Pillow, no database (runs off-thread)."""
    try:
        with _RENDER_SLOTS:
            thumb = thumbnailer.render_thumbnail(
                source,
                width=request.width,
                height=request.height,
                method=request.method,
                animated=request.animated,
                max_pixels=int(_conf("max_image_pixels")),
            )
    except thumbnailer.ImageTooLarge:
        raise MatrixError(413, "M_TOO_LARGE", "Content is too large to thumbnail") from None
    except thumbnailer.NotAnImage:
        raise _cannot_thumbnail() from None
    return thumb


def do_record_thumbnail(
    *,
    media: LocalMedia | RemoteMedia,
    request: ThumbnailRequest,
    thumb: thumbnailer.Thumbnail,
    blob: StoredBlob,
) -> MediaThumbnail | RemoteMediaThumbnail:
    """Keep a rendered thumbnail (its bytes are already in the file store)."""
    return media_store.insert_thumbnail(
        media=media,
        thumb=media_store.NewThumbnail(
            target_width=request.width,
            target_height=request.height,
            method=request.method,
            animated=request.animated,
            width=thumb.width,
            height=thumb.height,
            content_type=thumb.content_type,
            sha256=blob.sha256,
            size=blob.size,
        ),
    )


def is_standard_thumbnail(request: ThumbnailRequest) -> bool:
    return not request.animated and any(
        (s.width, s.height, s.method) == (request.width, request.height, request.method)
        for s in thumbnailer.STANDARD_THUMBNAILS
    )


async def access_thumbnail(
    *, server_name: str, media_id: str, request: ThumbnailRequest, legacy: bool
) -> MediaContent:
    """``GET .../thumbnail/{serverName}/{mediaId}``: a stored thumbnail, else one made now."""
    media, source = await sync_to_async(access_thumbnail_source)(
        server_name=server_name, media_id=media_id, legacy=legacy
    )
    assert source.path is not None
    return await thumbnail_from(media, source=source.path, request=request)


async def thumbnail_from(
    media: LocalMedia | RemoteMedia, *, source: Path, request: ThumbnailRequest
) -> MediaContent:
    """A stored thumbnail of ``media`` (ours, or another server's cached here), else one
    rendered from ``source`` now and kept unless the media has enough of them already."""
    if not _conf("dynamic_thumbnails"):
        request = choose_standard_size(request)
    stored = await sync_to_async(_stored_thumbnail)(media, request)
    if stored is not None:
        return stored
    thumb = await asyncio.to_thread(render_thumbnail, source=source, request=request)
    if (
        is_standard_thumbnail(request)
        or await sync_to_async(media_store.count_thumbnails)(media) < MAX_STORED_THUMBNAILS
    ):
        blob = await asyncio.to_thread(get_file_store().write_bytes, thumb.data)
        await sync_to_async(do_record_thumbnail)(media=media, request=request, thumb=thumb, blob=blob)
    # Else served but not kept: a client walking through sizes cannot fill the disk.
    return MediaContent(path=None, size=len(thumb.data), content_type=thumb.content_type, data=thumb.data)


def get_local_thumbnail(*, media_id: str, request: ThumbnailRequest) -> MediaContent:
    """A thumbnail of our media for another server (``GET /_matrix/federation/v1/media/thumbnail``):
    :func:`access_thumbnail` for a synchronous caller (the Embassy's views are synchronous)."""
    media, source = access_thumbnail_source(server_name=get_server_name(), media_id=media_id, legacy=False)
    if not _conf("dynamic_thumbnails"):
        request = choose_standard_size(request)
    stored = _stored_thumbnail(media, request)
    if stored is not None:
        return stored
    assert source.path is not None
    thumb = render_thumbnail(source=source.path, request=request)
    if is_standard_thumbnail(request) or media_store.count_thumbnails(media) < MAX_STORED_THUMBNAILS:
        blob = get_file_store().write_bytes(thumb.data)
        do_record_thumbnail(media=media, request=request, thumb=thumb, blob=blob)
    return MediaContent(path=None, size=len(thumb.data), content_type=thumb.content_type, data=thumb.data)


def do_generate_standard_thumbnails(*, media_id: str) -> int:
    """The spec's recommended sizes for a new upload (Celery ``media`` queue). Idempotent.

    A small image gives several identical thumbnails (no upscaling); the file
    store keeps their bytes once. Returns how many were made.
    """
    media = media_store.get_local_media(media_id)
    if media is None or media.sha256 is None or media.quarantined:
        return 0
    if content_types.essence(media.content_type) not in thumbnailer.THUMBNAILABLE_CONTENT_TYPES:
        return 0
    source = get_file_store().blob_path(media.sha256)
    made = 0
    for spec in thumbnailer.STANDARD_THUMBNAILS:
        request = ThumbnailRequest(width=spec.width, height=spec.height, method=spec.method, animated=False)
        if _stored_thumbnail(media, request) is not None:
            continue
        try:
            thumb = render_thumbnail(source=source, request=request)
        except MatrixError:
            return made  # not an image after all, or too large: nothing to make
        blob = get_file_store().write_bytes(thumb.data)
        do_record_thumbnail(media=media, request=request, thumb=thumb, blob=blob)
        made += 1
    return made


# --------------------------------------------------------------------------- URL previews


def check_preview_request(*, url: str | None, ts: str | None) -> str:
    if not _conf("url_preview_enabled"):
        raise MatrixError(404, "M_UNRECOGNIZED", "URL previews are disabled on this server")
    if not url:
        raise MatrixError(400, "M_MISSING_PARAM", "The url parameter is required")
    if ts is not None and not re.fullmatch(r"-?[0-9]{1,19}", ts):
        raise MatrixError(400, "M_INVALID_PARAM", "ts must be an integer (milliseconds)")
    if len(url) > 8192:
        raise MatrixError(400, "M_INVALID_PARAM", "url is too long")
    try:
        preview_fetcher.check_url(url)
    except preview_fetcher.PreviewError as exc:
        raise MatrixError(exc.status, exc.errcode, str(exc)) from None
    return url


def preview_ip_policy() -> preview_fetcher.IpPolicy:
    return preview_fetcher.IpPolicy.from_config(
        _conf("url_preview_ip_range_blacklist"), _conf("url_preview_ip_range_whitelist")
    )


_PIL_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}


def store_preview_image(*, data: bytes) -> tuple[StoredBlob, str, tuple[int, int]] | None:
    """A fetched image into the file store, if it is one (no database: runs off-thread)."""

    try:
        info = thumbnailer.probe(io.BytesIO(data), max_pixels=int(_conf("max_image_pixels")))
    except thumbnailer.ThumbnailError:
        return None
    # The type comes from the bytes, not from the remote server's claim.
    content_type = _PIL_CONTENT_TYPES[info.format]
    return get_file_store().write_bytes(data), content_type, (info.width, info.height)


def do_record_preview_image(
    *, uploader: str, blob: StoredBlob, content_type: str, size: tuple[int, int]
) -> dict[str, Any]:
    mxc = do_record_upload(
        uploader=uploader,
        meta=UploadMetadata(content_type=content_type, upload_name=None),
        blob=blob,
        size=size,
    )
    return {
        "og:image": mxc,
        "og:image:type": content_type,
        "og:image:width": size[0],
        "og:image:height": size[1],
        "matrix:image:size": blob.size,
    }


async def _image_facts(*, uploader: str, data: bytes) -> dict[str, Any]:
    stored = await asyncio.to_thread(store_preview_image, data=data)
    if stored is None:
        return {}
    blob, content_type, size = stored
    return await sync_to_async(do_record_preview_image)(
        uploader=uploader, blob=blob, content_type=content_type, size=size
    )


async def access_url_preview(
    *, user_id: str, url: str, policy: preview_fetcher.IpPolicy | None = None
) -> dict[str, Any]:
    """``GET /_matrix/client/v1/media/preview_url``: OpenGraph data of ``url`` (cached)."""
    cached = await sync_to_async(media_store.get_cached_preview)(url=url, now=now_ms())
    if cached is not None:
        return cached
    policy = policy or preview_ip_policy()
    max_bytes = min(preview_fetcher.MAX_RESPONSE_BYTES, max_upload_size())
    try:
        page = await preview_fetcher.fetch(url, policy=policy, max_bytes=preview_fetcher.MAX_RESPONSE_BYTES)
    except preview_fetcher.PreviewError as exc:
        raise MatrixError(exc.status, exc.errcode, f"Cannot preview this URL: {exc}") from None
    og: dict[str, Any] = {}
    if preview_fetcher.is_html(page.content_type):
        meta = await asyncio.to_thread(
            preview_fetcher.parse_opengraph, page.body, content_type=page.content_type, base_url=page.url
        )
        og.update(meta.og)
        if meta.image_url:
            try:
                image = await preview_fetcher.fetch(meta.image_url, policy=policy, max_bytes=max_bytes)
            except preview_fetcher.PreviewError as exc:
                logger.info("preview of %s: image not fetched: %s", url, exc)
            else:
                og.update(await _image_facts(uploader=user_id, data=image.body))
    elif page.content_type.lower().startswith("image/") and len(page.body) <= max_bytes:
        og.update(await _image_facts(uploader=user_id, data=page.body))
    await sync_to_async(media_store.store_preview)(url=url, og=og, expires_ts=now_ms() + PREVIEW_CACHE_MS)
    return og


# --------------------------------------------------------------------------- retention


def parse_duration_ms(value: Any) -> int | None:
    """Synapse-style durations: ``90d``, ``12h``, ``30m``, ``1y``, or a number of milliseconds."""
    if value is None:
        return None
    ms = duration_ms(value)
    if ms is None:
        raise ValueError(f"media_retention: {value!r} is not a duration such as 90d, 12h or 30m")
    return ms


def do_purge_media_retention(*, batch: int = 500) -> int:
    """Beat job: delete local media nobody downloaded within ``media_retention.local_media_lifetime``
    (except quarantined and protected media and avatars),
    pending uploads past their deadline, expired preview cache rows and abandoned temp files.

    Returns how many media items were deleted. Blobs are removed only once no
    row refers to them (dedupe) and after the store's grace period.
    """
    now = now_ms()
    store = get_file_store()
    deleted = 0
    lifetime = parse_duration_ms((_conf("media_retention") or {}).get("local_media_lifetime"))
    if lifetime:
        # Avatars stay, as with Synapse's media retention (its ``keep_profiles``).
        keep = frozenset(media_admin_store.avatar_media_ids(server_name=get_server_name()))
        while True:
            rows = media_store.get_unaccessed_media(before_ts=now - lifetime, limit=batch, keep=keep)
            if not rows:
                break
            hashes = media_store.delete_local_media([m.pk for m in rows])
            for sha256 in media_store.unreferenced_hashes(hashes):
                store.delete_if_stale(sha256)
            deleted += len(rows)
            if len(rows) < batch:
                break
    while True:
        pending = media_store.get_expired_pending_media(now=now, limit=batch)
        if not pending:
            break
        media_store.delete_local_media([m.pk for m in pending])
        deleted += len(pending)
        if len(pending) < batch:
            break
    media_store.delete_expired_previews(now=now)
    store.delete_stale_temp_files()
    return deleted

"""Other servers' media, for our users: fetched over federation once, then served from a cache.

Spec: server-server API "Content Repository"
(https://spec.matrix.org/v1.19/server-server-api/#content-repository) and client-server
API "Content repository" (authenticated media, v1.11): a client asks *its* server for
``mxc://<other server>/<media id>``; its server fetches it with a signed
``GET /_matrix/federation/v1/media/download/{mediaId}`` whose answer is ``multipart/mixed``:
a JSON part, then the bytes or a ``Location`` to fetch them from. Servers that do not
know that endpoint (404/400/405 ``M_UNRECOGNIZED``) are asked on the legacy
``GET /_matrix/media/v3/download/{serverName}/{mediaId}?allow_remote=false``.

* **Address policy.** The federation request and every ``Location``/redirect hop go
  through the federation client's transport: each address is checked against
  ``ip_range_blacklist`` minus ``ip_range_whitelist`` before a connection is made, so a
  hostile server cannot point us at an internal service.
* **Size.** At most ``max_upload_size`` bytes of media are read (plus a little for the
  multipart framing); a larger item fails that one request (502 ``M_TOO_LARGE`` naming
  the server) and nothing is stored.
* **Once.** Concurrent requests for the same item in one process share one fetch (the
  first starts it on a small thread pool; the others wait for its result). Rows are
  inserted idempotently, so two processes racing store it once too.
* **Cache.** The bytes join the content-addressed store of local media; a
  ``RemoteMedia`` row names them. Rows nobody read within
  ``media_retention.remote_media_lifetime`` are purged by the media retention beat job.
* **Thumbnails** are rendered here from the cached original (the remote is not asked):
  one fetch serves the download and every size.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from asgiref.sync import sync_to_async
from django.conf import settings

from dagcore.actions import media as media_actions
from dagcore.actions.media import MediaContent, ThumbnailRequest
from dagcore.clock import duration_ms, now_ms
from dagcore.federation.client import (
    FederationAnswerTooLarge,
    FederationBlocked,
    FederationError,
    FederationHttpError,
    RawAnswer,
    encode_path,
    get_federation_client,
    http_error,
)
from dagcore.http.errors import MatrixError
from dagcore.media import content_types, multipart, thumbnailer
from dagcore.media.filestore import StoredBlob, get_file_store
from dagcore.models import RemoteMedia
from dagcore.server_keys import get_server_name
from dagcore.store import media as media_store

logger = logging.getLogger(__name__)

#: Room for the multipart framing and the JSON part around ``max_upload_size`` bytes of media.
MULTIPART_OVERHEAD = 64 * 1024
#: One fetch, redirects included (Synapse: 60 s).
FETCH_TIMEOUT_S = 60.0
#: Fetches running at once per process (each holds up to ``max_upload_size`` bytes in memory).
_FETCH_WORKERS = 8
_executor = concurrent.futures.ThreadPoolExecutor(
    max_workers=_FETCH_WORKERS, thread_name_prefix="remote-media"
)
_inflight: dict[tuple[str, str], concurrent.futures.Future[FetchedMedia]] = {}
_inflight_lock = threading.Lock()


@dataclass(frozen=True)
class FetchedMedia:
    """Bytes of a remote item, already in the file store, and what the remote said of them."""

    blob: StoredBlob
    content_type: str
    upload_name: str | None


def _max_size() -> int:
    return media_actions.max_upload_size()


# --------------------------------------------------------------------------- reading an answer


_FILENAME_STAR = re.compile(r"filename\*\s*=\s*(?:utf-8|UTF-8)''([^;]+)")
_FILENAME = re.compile(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))')


def _upload_name(disposition: str | None) -> str | None:
    """The file name of a ``Content-Disposition`` (RFC 6266), if it is one we would accept."""
    if not disposition:
        return None
    name: str | None = None
    star = _FILENAME_STAR.search(disposition)
    if star:
        name = unquote(star.group(1).strip(), errors="strict") if star.group(1) else None
    else:
        plain = _FILENAME.search(disposition)
        if plain:
            name = plain.group(1) if plain.group(1) is not None else plain.group(2)
            name = re.sub(r"\\(.)", r"\1", name)
    try:
        return content_types.check_upload_filename(name)
    except ValueError:
        return None


def _content_type(raw: str | None) -> str:
    try:
        return content_types.normalize_content_type(raw)
    except ValueError:
        return content_types.DEFAULT_CONTENT_TYPE


def _too_large(server_name: str) -> MatrixError:
    return MatrixError(
        502,
        "M_TOO_LARGE",
        f"Media on {server_name[:255]} is larger than this server's max_upload_size ({_max_size()} bytes)",
    )


def _fetch_failed(server_name: str, exc: FederationError) -> MatrixError:
    if isinstance(exc, FederationAnswerTooLarge):
        return _too_large(server_name)
    if isinstance(exc, FederationHttpError):
        errcode = (exc.body or {}).get("errcode")
        if exc.status == 404:
            return MatrixError(404, "M_NOT_FOUND", f"Media not found on {server_name[:255]}")
        if exc.status == 504 and errcode == "M_NOT_YET_UPLOADED":
            return MatrixError(
                504, "M_NOT_YET_UPLOADED", f"Content has not yet been uploaded to {server_name[:255]}"
            )
        if errcode == "M_TOO_LARGE":
            return _too_large(server_name)
    if isinstance(exc, FederationBlocked):
        return MatrixError(502, "M_UNKNOWN", f"Fetching media refused by this server's policy: {exc}")
    return MatrixError(502, "M_UNKNOWN", f"Could not fetch media: {exc}")


def _is_unrecognized(exc: FederationHttpError) -> bool:
    """An answer meaning "I do not serve that endpoint" (spec: unknown endpoints give
    404/405 ``M_UNRECOGNIZED``; some servers say 400)."""
    return exc.status in (400, 404, 405) and (exc.body or {}).get("errcode") == "M_UNRECOGNIZED"


def _store(
    server_name: str, data: bytes, *, content_type: str | None, disposition: str | None
) -> FetchedMedia:
    if len(data) > _max_size():
        raise _too_large(server_name)
    return FetchedMedia(
        blob=get_file_store().write_bytes(data),
        content_type=_content_type(content_type),
        upload_name=_upload_name(disposition),
    )


def _from_multipart(server_name: str, answer: RawAnswer) -> FetchedMedia:
    try:
        part = multipart.parse_media_answer(answer.body, answer.headers.get("content-type"))
    except multipart.MultipartError as exc:
        raise MatrixError(502, "M_UNKNOWN", f"{server_name[:255]}: bad media answer: {exc}") from None
    if part.location is not None:
        # Spec: the Location SHOULD NOT be cached (it may expire); the bytes are.
        try:
            target = get_federation_client().fetch_url(
                server_name, part.location, max_bytes=_max_size(), timeout=FETCH_TIMEOUT_S
            )
        except FederationError as exc:
            raise _fetch_failed(server_name, exc) from None
        if not 200 <= target.status < 300:
            raise MatrixError(
                502, "M_UNKNOWN", f"{server_name[:255]}: its media location answered HTTP {target.status}"
            )
        return _store(
            server_name,
            target.body,
            content_type=target.headers.get("content-type"),
            disposition=target.headers.get("content-disposition"),
        )
    assert part.content is not None
    return _store(
        server_name,
        part.content,
        content_type=part.headers.get("content-type"),
        disposition=part.headers.get("content-disposition"),
    )


def fetch_remote_media(*, server_name: str, media_id: str) -> FetchedMedia:
    """Fetch one item from its server into the file store (no database rows; runs off-thread).

    Raises :class:`MatrixError` naming the server: 404 unknown there, 502 unreachable,
    refused by policy, malformed or larger than ``max_upload_size``, 504 not yet uploaded.
    """
    client = get_federation_client()
    try:
        answer = client.request_raw(
            "GET",
            server_name,
            encode_path("/_matrix/federation/v1/media/download/{}", media_id),
            max_bytes=_max_size() + MULTIPART_OVERHEAD,
            timeout=FETCH_TIMEOUT_S,
            accept="multipart/mixed, application/json",
        )
        if 200 <= answer.status < 300:
            return _from_multipart(server_name, answer)
        error = http_error(server_name, answer)
        if not _is_unrecognized(error):
            raise error
        # An older server: the unauthenticated client-server download (as Synapse falls back).
        legacy = client.request_raw(
            "GET",
            server_name,
            encode_path("/_matrix/media/v3/download/{}/{}", server_name, media_id),
            query={"allow_remote": "false", "allow_redirect": "false"},
            signed=False,
            max_bytes=_max_size(),
            timeout=FETCH_TIMEOUT_S,
            accept="*/*",
        )
        if not 200 <= legacy.status < 300:
            raise http_error(server_name, legacy)
        return _store(
            server_name,
            legacy.body,
            content_type=legacy.headers.get("content-type"),
            disposition=legacy.headers.get("content-disposition"),
        )
    except FederationError as exc:
        raise _fetch_failed(server_name, exc) from None


# --------------------------------------------------------------------------- the cache


def check_remote_location(*, server_name: str, media_id: str) -> None:
    media_actions.check_media_location(server_name=server_name, media_id=media_id)


def get_cached_remote_media(*, server_name: str, media_id: str) -> RemoteMedia | None:
    """The cached row (its access time refreshed), ``None`` if not cached; 404 if quarantined."""
    row = media_store.get_remote_media(server_name=server_name, media_id=media_id)
    if row is None:
        return None
    if row.quarantined:
        raise MatrixError(404, "M_NOT_FOUND", "Media not found")
    if not get_file_store().blob_path(row.sha256).is_file():
        logger.error(
            "remote media %s/%s: content %s missing from the store", server_name, media_id, row.sha256
        )
        return None  # fetched again
    media_store.touch_remote_media_access(row, now=now_ms())
    return row


def do_record_remote_media(*, server_name: str, media_id: str, fetched: FetchedMedia) -> RemoteMedia:
    row = media_store.insert_remote_media(
        server_name=server_name,
        media_id=media_id,
        content_type=fetched.content_type,
        upload_name=fetched.upload_name,
        sha256=fetched.blob.sha256,
        size=fetched.blob.size,
    )
    if row.quarantined:
        raise MatrixError(404, "M_NOT_FOUND", "Media not found")
    return row


def _start_fetch(key: tuple[str, str]) -> tuple[concurrent.futures.Future[FetchedMedia], bool]:
    """The fetch of ``key`` in flight in this process, started now if there is none."""
    with _inflight_lock:
        future = _inflight.get(key)
        if future is not None:
            return future, False
        future = _executor.submit(fetch_remote_media, server_name=key[0], media_id=key[1])
        _inflight[key] = future
        return future, True


async def access_remote_media(*, server_name: str, media_id: str) -> RemoteMedia:
    """The cached copy of ``mxc://server_name/media_id``, fetched now if not cached."""
    check_remote_location(server_name=server_name, media_id=media_id)
    row = await sync_to_async(get_cached_remote_media)(server_name=server_name, media_id=media_id)
    if row is not None:
        return row
    key = (server_name, media_id)
    future, leader = _start_fetch(key)
    try:
        fetched = await asyncio.wrap_future(future)
        return await sync_to_async(do_record_remote_media)(
            server_name=server_name, media_id=media_id, fetched=fetched
        )
    finally:
        if leader:
            # Kept until the row exists, so a request arriving meanwhile joins this fetch.
            with _inflight_lock:
                if _inflight.get(key) is future:
                    del _inflight[key]


def _content_of(row: RemoteMedia) -> MediaContent:
    return MediaContent(
        path=get_file_store().blob_path(row.sha256),
        size=row.size,
        content_type=row.content_type,
        upload_name=row.upload_name,
    )


async def get_remote_download(*, server_name: str, media_id: str) -> MediaContent:
    """``GET /_matrix/client/v1/media/download/{serverName}/{mediaId}`` for another server's media."""
    return _content_of(await access_remote_media(server_name=server_name, media_id=media_id))


async def access_remote_thumbnail(
    *, server_name: str, media_id: str, request: ThumbnailRequest
) -> MediaContent:
    """``GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`` for another server's media:
    rendered here from the cached original (kept like local thumbnails)."""
    row = await access_remote_media(server_name=server_name, media_id=media_id)
    if content_types.essence(row.content_type) not in thumbnailer.THUMBNAILABLE_CONTENT_TYPES:
        raise MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content")
    return await media_actions.thumbnail_from(
        row, source=get_file_store().blob_path(row.sha256), request=request
    )


# --------------------------------------------------------------------------- retention


def remote_media_lifetime_ms() -> int | None:
    value: Any = (settings.DAGMA.media_retention or {}).get("remote_media_lifetime")
    if value is None:
        return None
    ms = duration_ms(value)
    if ms is None:
        raise ValueError(f"media_retention: {value!r} is not a duration such as 90d, 12h or 30m")
    return ms


def do_purge_remote_media(*, now: int, batch: int = 500) -> int:
    """Forget cached remote media none of our users read within ``remote_media_lifetime``
    (Synapse's option). Returns how many items were dropped; blobs go once unreferenced."""
    lifetime = remote_media_lifetime_ms()
    if not lifetime:
        return 0
    store = get_file_store()
    deleted = 0
    while True:
        rows = media_store.get_unaccessed_remote_media(before_ts=now - lifetime, limit=batch)
        if not rows:
            break
        hashes = media_store.delete_remote_media([r.pk for r in rows])
        for sha256 in media_store.unreferenced_hashes(hashes):
            store.delete_if_stale(sha256)
        deleted += len(rows)
        if len(rows) < batch:
            break
    return deleted


# --------------------------------------------------------------------------- one entry for Tribune


def _is_remote(server_name: str, media_id: str, *, legacy: bool) -> bool:
    """Whether a download names another server's media we may fetch; 404 on the legacy
    endpoints while authenticated media is enforced (spec v1.11 "freeze": new remote media
    is only fetched for the authenticated ``/_matrix/client/v1/media`` endpoints, as Synapse)."""
    media_actions.check_media_location(server_name=server_name, media_id=media_id)
    if server_name == get_server_name():
        return False
    if legacy and settings.DAGMA.enable_authenticated_media:
        raise MatrixError(404, "M_NOT_FOUND", "Media not found")
    return True


async def access_media_download(*, server_name: str, media_id: str, legacy: bool) -> MediaContent:
    """Any ``mxc://`` download: ours from the local store, another server's through the cache."""
    if _is_remote(server_name, media_id, legacy=legacy):
        return await get_remote_download(server_name=server_name, media_id=media_id)
    return await sync_to_async(media_actions.get_download)(
        server_name=server_name, media_id=media_id, legacy=legacy
    )


async def access_media_thumbnail(
    *, server_name: str, media_id: str, request: ThumbnailRequest, legacy: bool
) -> MediaContent:
    if _is_remote(server_name, media_id, legacy=legacy):
        return await access_remote_thumbnail(server_name=server_name, media_id=media_id, request=request)
    return await media_actions.access_thumbnail(
        server_name=server_name, media_id=media_id, request=request, legacy=legacy
    )

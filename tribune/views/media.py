"""Content repository (spec: client-server API "Content repository").

https://spec.matrix.org/v1.19/client-server-api/#content-repository

Two families of paths, both served here:

- authenticated media (v1.11): ``/_matrix/client/v1/media/{config,download,thumbnail,preview_url}``,
  access token required;
- the legacy ``/_matrix/media/v3`` (and ``r0``) paths: ``upload`` (both SDKs still upload there,
  with a token), ``v1/create`` + ``PUT v3/upload/{serverName}/{mediaId}``, ``config`` and
  ``preview_url`` (token required, as the spec says), and the unauthenticated ``download`` and
  ``thumbnail``. Those two serve local media as Synapse does with ``enable_authenticated_media``
  (our default, true): media uploaded while it is on answers 404 there (spec v1.11 "freeze":
  the legacy endpoints "MAY return 404 M_NOT_FOUND for media which exists, but is after the
  server froze unauthenticated media access"); media uploaded while it was off stays
  available. Element (js-sdk 43) and matrix-nio 0.26 download through the v1 paths.

Another server's media is fetched over federation on the authenticated paths and served
from the remote-media cache (``dagcore.actions.remote_media``).

The views are ``async`` (see ``dagcore.actions.media`` for why) under the same
``tribune.http.endpoint`` wrapper as every other view (authentication, NUL check, rate
limits); the wrapper never parses their bodies (uploads read theirs, streamed and
capped). Creating media (``upload``, ``create``) spends the ``rc_media_create`` limit
(Synapse's name). Downloads and thumbnails carry the browser-safety headers of
``dagcore.media.content_types``; large files are streamed from disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

from asgiref.sync import sync_to_async
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, re_path

from dagcore.actions import media as media_actions
from dagcore.actions import remote_media
from dagcore.http.errors import MatrixError
from dagcore.http.responses import error_response
from dagcore.media import content_types, ranges
from tribune.http import RequestContext, client_route, endpoint

#: Bodies up to this size are answered in one piece; larger files are streamed.
STREAM_THRESHOLD = 1024 * 1024
CHUNK_SIZE = 256 * 1024
#: Thumbnail file names by type, for ``Content-Disposition`` (spec: "SHOULD contain a file name").
_THUMBNAIL_NAMES = {
    "image/jpeg": "thumbnail.jpg",
    "image/png": "thumbnail.png",
    "image/gif": "thumbnail.gif",
    "image/webp": "thumbnail.webp",
    "image/apng": "thumbnail.png",
}


# --------------------------------------------------------------------------- answers with bytes


async def _read_chunks(handle: BinaryIO, remaining: int | None = None) -> AsyncIterator[bytes]:
    """The file's bytes from its current position: all, or ``remaining`` of them."""
    try:
        while remaining is None or remaining > 0:
            want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            chunk = await asyncio.to_thread(handle.read, want)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()


def _read_span(handle: BinaryIO, first: int, length: int) -> bytes:
    handle.seek(first)
    return handle.read(length)


async def _file_response(
    content: media_actions.MediaContent,
    *,
    content_type: str,
    disposition: str,
    authenticated: bool,
    range_header: str | None = None,
) -> HttpResponseBase:
    """The media bytes, or the one byte range asked for (206; 416 past the end)."""
    response: HttpResponseBase
    size = len(content.data) if content.data is not None else content.size
    try:
        span = ranges.parse_byte_range(range_header, size)
    except ranges.UnsatisfiableRange:
        response = error_response(MatrixError(416, "M_UNKNOWN", "Requested range not satisfiable"))
        response["Content-Range"] = f"bytes */{size}"
        return response
    first, last = span if span is not None else (0, size - 1)
    length = max(0, last - first + 1)
    status = 206 if span is not None else 200
    if content.data is not None:  # just rendered
        response = HttpResponse(content.data[first : last + 1], content_type=content_type, status=status)
    else:
        assert content.path is not None
        try:
            # Opened now: a purge deleting the blob afterwards cannot cut the answer short.
            handle = await asyncio.to_thread(open, content.path, "rb")
        except FileNotFoundError:
            raise MatrixError(404, "M_NOT_FOUND", "Media not found") from None
        if length <= STREAM_THRESHOLD:
            try:
                data = await asyncio.to_thread(_read_span, handle, first, length)
            finally:
                handle.close()
            response = HttpResponse(data, content_type=content_type, status=status)
        else:
            await asyncio.to_thread(handle.seek, first)
            response = StreamingHttpResponse(
                _read_chunks(handle, length), content_type=content_type, status=status
            )
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    if span is not None:
        response["Content-Range"] = f"bytes {first}-{last}/{size}"
    return _with_headers(response, disposition=disposition, authenticated=authenticated)


def _with_headers(response: HttpResponseBase, *, disposition: str, authenticated: bool) -> HttpResponseBase:
    response["Content-Disposition"] = disposition
    for name, value in content_types.SECURITY_HEADERS.items():
        response[name] = value
    # Authenticated media must not sit in shared caches; legacy media is public anyway.
    response["Cache-Control"] = "private, max-age=86400" if authenticated else "public, max-age=86400"
    return response


async def _download(
    ctx: RequestContext, server_name: str, media_id: str, file_name: str | None, *, legacy: bool
) -> HttpResponseBase:
    content = await remote_media.access_media_download(
        server_name=server_name, media_id=media_id, legacy=legacy
    )
    name = file_name if file_name else content.upload_name
    return await _file_response(
        content,
        content_type=content_types.served_content_type(content.content_type),
        disposition=content_types.content_disposition(
            inline=content_types.is_inline_safe(content.content_type), filename=name
        ),
        authenticated=not legacy,
        range_header=ctx.request.META.get("HTTP_RANGE"),
    )


async def _thumbnail(
    ctx: RequestContext, server_name: str, media_id: str, *, legacy: bool
) -> HttpResponseBase:
    q = ctx.query
    request = media_actions.check_thumbnail_request(
        width=q.get("width"), height=q.get("height"), method=q.get("method"), animated=q.get("animated")
    )
    content = await remote_media.access_media_thumbnail(
        server_name=server_name, media_id=media_id, request=request, legacy=legacy
    )
    return await _file_response(
        content,
        content_type=content.content_type,
        disposition=content_types.content_disposition(
            inline=True, filename=_THUMBNAIL_NAMES.get(content.content_type, "thumbnail")
        ),
        authenticated=not legacy,
    )


# --------------------------------------------------------------------------- authenticated media (v1)


@endpoint(methods=("GET",), allow_guest=True, body_methods=())
async def config(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v1/media/config and GET /_matrix/media/v3/config (the same answer)"""
    return media_actions.get_media_config()


@endpoint(methods=("GET",), allow_guest=True, body_methods=(), streaming=True)
async def download(
    ctx: RequestContext, server_name: str, media_id: str, file_name: str | None = None
) -> HttpResponseBase:
    """GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]"""
    return await _download(ctx, server_name, media_id, file_name, legacy=False)


@endpoint(methods=("GET",), allow_guest=True, body_methods=(), streaming=True)
async def thumbnail(ctx: RequestContext, server_name: str, media_id: str) -> HttpResponseBase:
    """GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}"""
    return await _thumbnail(ctx, server_name, media_id, legacy=False)


@endpoint(methods=("GET",), body_methods=())
async def preview_url(ctx: RequestContext) -> dict[str, Any]:
    """GET /_matrix/client/v1/media/preview_url and GET /_matrix/media/v3/preview_url (the same answer)"""
    url = media_actions.check_preview_request(url=ctx.query.get("url"), ts=ctx.query.get("ts"))
    return await media_actions.access_url_preview(user_id=ctx.user_id, url=url)


# --------------------------------------------------------------------------- /_matrix/media/v3


@endpoint(methods=("POST",), rate_limit="media_create", body_methods=())
async def upload(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/media/v3/upload"""
    meta = ctx.request.META
    content_uri = await media_actions.check_upload_media(
        uploader=ctx.user_id,
        content_type_header=meta.get("CONTENT_TYPE"),
        filename=ctx.query.get("filename"),
        content_length=meta.get("CONTENT_LENGTH"),
        read=ctx.request.read,
    )
    return {"content_uri": content_uri}


@endpoint(methods=("POST",), rate_limit="media_create", body_methods=())
async def create(ctx: RequestContext) -> dict[str, Any]:
    """POST /_matrix/media/v1/create"""
    return await sync_to_async(media_actions.do_create_pending_media)(uploader=ctx.user_id)


@endpoint(methods=("PUT",), body_methods=())
async def upload_to_mxc(ctx: RequestContext, server_name: str, media_id: str) -> dict[str, Any]:
    """PUT /_matrix/media/v3/upload/{serverName}/{mediaId}"""
    meta = ctx.request.META
    await media_actions.check_upload_pending_media(
        server_name=server_name,
        media_id=media_id,
        uploader=ctx.user_id,
        content_type_header=meta.get("CONTENT_TYPE"),
        filename=ctx.query.get("filename"),
        content_length=meta.get("CONTENT_LENGTH"),
        read=ctx.request.read,
    )
    return {}


@endpoint(methods=("GET",), auth="none", body_methods=(), streaming=True)
async def legacy_download(
    ctx: RequestContext, server_name: str, media_id: str, file_name: str | None = None
) -> HttpResponseBase:
    """GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}] (unauthenticated, deprecated)"""
    return await _download(ctx, server_name, media_id, file_name, legacy=True)


@endpoint(methods=("GET",), auth="none", body_methods=(), streaming=True)
async def legacy_thumbnail(ctx: RequestContext, server_name: str, media_id: str) -> HttpResponseBase:
    """GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId} (unauthenticated, deprecated)"""
    return await _thumbnail(ctx, server_name, media_id, legacy=True)


_LEGACY = r"^_matrix/media/(?:v3|r0)/"
# Matched on the raw path: an encoded "/" (%2F) stays inside one segment and is decoded into
# the parameter, where the grammar check refuses it.
_MXC = r"(?P<server_name>[^/]+)/(?P<media_id>[^/]+)"

routes: list[URLPattern] = [
    re_path(_LEGACY + r"upload$", upload),
    re_path(_LEGACY + rf"upload/{_MXC}$", upload_to_mxc),
    re_path(r"^_matrix/media/v1/create$", create),
    re_path(_LEGACY + r"config$", config),
    re_path(_LEGACY + rf"download/{_MXC}/?$", legacy_download),
    re_path(_LEGACY + rf"download/{_MXC}/(?P<file_name>[^/]+)$", legacy_download),
    re_path(_LEGACY + rf"thumbnail/{_MXC}$", legacy_thumbnail),
    re_path(_LEGACY + r"preview_url$", preview_url),
    client_route("media/config", config, versions=("v1",)),
    client_route("media/download/<server_name>/<media_id>", download, versions=("v1",)),
    client_route("media/download/<server_name>/<media_id>/<file_name>", download, versions=("v1",)),
    client_route("media/thumbnail/<server_name>/<media_id>", thumbnail, versions=("v1",)),
    client_route("media/preview_url", preview_url, versions=("v1",)),
]

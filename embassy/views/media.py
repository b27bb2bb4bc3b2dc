"""Our media, for other servers (spec: server-server API "Content Repository").

https://spec.matrix.org/v1.19/server-server-api/#content-repository — authenticated
(``X-Matrix``) downloads and thumbnails of media uploaded here, answered as
``multipart/mixed``: an empty JSON object, then the bytes with their ``Content-Type``
and ``Content-Disposition`` (we never answer with a ``Location``). The media ID is
ours by construction (the path has no server name); unknown, quarantined or expired
IDs are 404, a pending upload 504 ``M_NOT_YET_UPLOADED``.
"""

from __future__ import annotations

from urllib.parse import unquote

from django.http import HttpResponse

from dagcore.actions import media as media_actions
from dagcore.http.errors import MatrixError
from dagcore.media import content_types, multipart
from dagcore.server_keys import get_server_name
from embassy.http import FederationRequest, federation_endpoint

_THUMBNAIL_NAMES = {
    "image/jpeg": "thumbnail.jpg",
    "image/png": "thumbnail.png",
    "image/gif": "thumbnail.gif",
    "image/webp": "thumbnail.webp",
}


def _multipart_response(
    content: media_actions.MediaContent, *, disposition: str, content_type: str
) -> HttpResponse:
    if content.data is not None:
        data = content.data
    else:
        assert content.path is not None
        try:
            data = content.path.read_bytes()
        except FileNotFoundError:
            raise MatrixError(404, "M_NOT_FOUND", "Media not found") from None
    boundary = multipart.new_boundary()
    body = multipart.build_media_answer(
        boundary=boundary, content_type=content_type, content_disposition=disposition, content=data
    )
    response = HttpResponse(body, content_type=f"multipart/mixed; boundary={boundary}")
    response["Content-Length"] = str(len(body))
    return response


@federation_endpoint(authenticated=True)
def download(fed: FederationRequest, media_id: str) -> HttpResponse:
    """GET /_matrix/federation/v1/media/download/{mediaId}"""
    content = media_actions.get_download(
        server_name=get_server_name(),
        media_id=unquote(media_id),  # matched on the raw path
        legacy=False,
    )
    return _multipart_response(
        content,
        content_type=content_types.served_content_type(content.content_type),
        disposition=content_types.content_disposition(
            inline=content_types.is_inline_safe(content.content_type), filename=content.upload_name
        ),
    )


@federation_endpoint(authenticated=True)
def thumbnail(fed: FederationRequest, media_id: str) -> HttpResponse:
    """GET /_matrix/federation/v1/media/thumbnail/{mediaId}"""
    q = fed.request.GET
    request = media_actions.check_thumbnail_request(
        width=q.get("width"), height=q.get("height"), method=q.get("method"), animated=q.get("animated")
    )
    content = media_actions.get_local_thumbnail(media_id=unquote(media_id), request=request)
    return _multipart_response(
        content,
        content_type=content.content_type,
        disposition=content_types.content_disposition(
            inline=True, filename=_THUMBNAIL_NAMES.get(content.content_type, "thumbnail")
        ),
    )

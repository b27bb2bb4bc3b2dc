"""matrix-nio 0.26 shares files through Dagma: upload, download (authenticated media), thumbnails,
and an encrypted attachment as E2EE rooms send them."""

from __future__ import annotations

import asyncio
import io
import secrets

from nio import (
    AsyncClient,
    DownloadResponse,
    RegisterResponse,
    ResizingMethod,
    ThumbnailResponse,
    UploadResponse,
)
from nio.crypto.attachments import decrypt_attachment
from PIL import Image

from tests.media import images


async def _registered(base_url: str) -> AsyncClient:
    client = AsyncClient(base_url, f"nio{secrets.token_hex(4)}")
    registered = await client.register(client.user, "correct horse battery", "nio media test")
    assert isinstance(registered, RegisterResponse), registered
    return client


def test_nio_uploads_then_downloads_and_thumbnails_an_image(dagma_server) -> None:
    async def journey() -> None:
        client = await _registered(dagma_server.base_url)
        try:
            data = images.png(640, 480, (30, 60, 90))
            uploaded, keys = await client.upload(
                io.BytesIO(data), content_type="image/png", filename="nio photo.png", filesize=len(data)
            )
            assert isinstance(uploaded, UploadResponse), uploaded
            assert keys is None and uploaded.content_uri.startswith("mxc://localhost/")

            downloaded = await client.download(mxc=uploaded.content_uri)
            assert isinstance(downloaded, DownloadResponse), downloaded
            assert downloaded.body == data
            assert downloaded.content_type == "image/png" and downloaded.filename == "nio photo.png"

            server_name, media_id = uploaded.content_uri.removeprefix("mxc://").split("/")
            for method, size in ((ResizingMethod.crop, (64, 64)), (ResizingMethod.scale, (64, 48))):
                thumb = await client.thumbnail(server_name, media_id, 64, 64, method)
                assert isinstance(thumb, ThumbnailResponse), thumb
                assert thumb.content_type == "image/png"
                assert Image.open(io.BytesIO(thumb.body)).size == size

            # Control: an unknown media ID is an error response, not bytes.
            missing = await client.download(mxc=f"mxc://{server_name}/doesNotExist123")
            assert not isinstance(missing, DownloadResponse)
        finally:
            await client.close()

    asyncio.run(journey())


def test_nio_encrypted_attachment_round_trips(dagma_server) -> None:
    async def journey() -> None:
        client = await _registered(dagma_server.base_url)
        try:
            secret = b"end-to-end encrypted file " * 1000
            uploaded, keys = await client.upload(
                io.BytesIO(secret),
                content_type="application/octet-stream",
                encrypt=True,
                filesize=len(secret),
            )
            assert isinstance(uploaded, UploadResponse), uploaded
            assert keys is not None
            downloaded = await client.download(mxc=uploaded.content_uri)
            assert isinstance(downloaded, DownloadResponse), downloaded
            assert downloaded.body != secret
            plain = decrypt_attachment(
                downloaded.body, keys["key"]["k"], keys["hashes"]["sha256"], keys["iv"]
            )
            assert plain == secret
        finally:
            await client.close()

    asyncio.run(journey())

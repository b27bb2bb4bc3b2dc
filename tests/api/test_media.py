"""The content repository against live servers: uploads, downloads, thumbnails, safety, previews.

Servers: the suite's shared ``dagma_server`` (defaults: authenticated media, previews off), a
"small" one (``max_upload_size`` 4 KiB, ``enable_authenticated_media: false``, previews on with the
default blacklist) and a "whitelist" one (previews may reach 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.media import images, webserver
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer

V1 = "/_matrix/client/v1/media"
V3 = "/_matrix/media/v3"
SMALL_LIMIT = 4096
CSP = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
    "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        tmp_path_factory.mktemp("media-small"),
        config={
            "max_upload_size": SMALL_LIMIT,
            "enable_authenticated_media": False,
            "url_preview_enabled": True,
        },
    )
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def whitelist_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(
        tmp_path_factory.mktemp("media-whitelist"),
        config={"url_preview_enabled": True, "url_preview_ip_range_whitelist": ["127.0.0.1/32"]},
    )
    server.start()
    yield server
    server.destroy()


def client_for(server: LiveServer) -> MatrixClient:
    return MatrixClient(server.base_url).register()


def upload(
    c: MatrixClient,
    data: bytes,
    content_type: str | None = "image/png",
    filename: str | None = None,
    **kw: Any,
) -> str:
    headers = {"Content-Type": content_type} if content_type else {}
    params = {"filename": filename} if filename is not None else None
    r = c.post(f"{V3}/upload", content=data, headers=headers, params=params, spec="/media/v3/upload", **kw)
    return str(r.json["content_uri"])


def path_of(mxc: str) -> str:
    server_name, media_id = mxc.removeprefix("mxc://").split("/")
    return f"{q(server_name)}/{q(media_id)}"


def media_files(server: LiveServer) -> list[Path]:
    return [p for p in (server.workdir / "media_store" / "content").rglob("*") if p.is_file()]


# --------------------------------------------------------------------------- upload & download


def test_upload_then_download_is_byte_identical_with_and_without_a_filename(make_client) -> None:
    c = make_client()
    data = images.png(120, 80)
    named = upload(c, data, filename="holiday photo.png")
    unnamed = upload(c, data + b"")
    r = c.get(f"{V1}/download/{path_of(named)}", spec="/media/download/{serverName}/{mediaId}")
    assert r.raw.content == data
    assert r.raw.headers["Content-Type"] == "image/png"
    assert r.raw.headers["Content-Disposition"] == 'inline; filename="holiday photo.png"'
    assert int(r.raw.headers["Content-Length"]) == len(data)
    r = c.get(f"{V1}/download/{path_of(unnamed)}", spec="/media/download/{serverName}/{mediaId}")
    assert r.raw.content == data and r.raw.headers["Content-Disposition"] == "inline"
    # The file name in the path overrides, encoded per RFC 6266 when not plain ASCII.
    r = c.get(
        f"{V1}/download/{path_of(named)}/{q('Überblick.png')}",
        spec="/media/download/{serverName}/{mediaId}/{fileName}",
    )
    assert r.raw.content == data
    assert r.raw.headers["Content-Disposition"] == "inline; filename*=utf-8''%C3%9Cberblick.png"


def test_a_large_upload_is_streamed_back_intact(make_client) -> None:
    c = make_client()
    data = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MB: above the one-piece threshold
    mxc = upload(c, data, "application/octet-stream")
    r = c.get(f"{V1}/download/{path_of(mxc)}")
    assert hashlib.sha256(r.raw.content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert int(r.raw.headers["Content-Length"]) == len(data)
    assert r.raw.headers["Content-Disposition"] == "attachment"


@pytest.mark.parametrize("size", [1000, 3 * 1024 * 1024 + 5], ids=["small", "streamed"])
def test_byte_ranges_are_served_for_seeking_in_audio_and_video(make_client, size: int) -> None:
    """RFC 9110 ranges (Safari plays video only from servers that answer them)."""
    c = make_client()
    data = bytes((i * 7) % 251 for i in range(size))
    mxc = upload(c, data, "video/mp4")
    url = f"{V1}/download/{path_of(mxc)}"
    whole = c.get(url)
    assert whole.raw.headers["Accept-Ranges"] == "bytes" and whole.raw.content == data
    for header, first, last in [
        ("bytes=0-99", 0, 99),
        (f"bytes={size - 10}-", size - 10, size - 1),
        ("bytes=-25", size - 25, size - 1),
        (f"bytes=100-{size + 5000}", 100, size - 1),  # clamped to the end
        (f"bytes=1-{size - 2}", 1, size - 2),  # the large case streams this one
    ]:
        r = c.get(url, headers={"Range": header}, expect=206)
        assert r.raw.content == data[first : last + 1], header
        assert r.raw.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert int(r.raw.headers["Content-Length"]) == last - first + 1
    past = c.get(url, headers={"Range": f"bytes={size}-"}, expect=416)
    assert past.raw.headers["Content-Range"] == f"bytes */{size}"
    # Several ranges, or nonsense, get the whole content (RFC 9110 allows ignoring Range).
    for header in ("bytes=0-1,5-6", "bytes=5-2", "items=0-1", "bytes=abc"):
        r = c.get(url, headers={"Range": header}, expect=200)
        assert r.raw.content == data and "Content-Range" not in r.raw.headers


def test_identical_uploads_share_one_file_but_get_two_media_ids(make_client, dagma_server) -> None:
    c = make_client()
    data = images.png(33, 44, (1, 2, 3))
    first, second = upload(c, data), upload(c, data, filename="copy.png")
    assert first != second
    digest = hashlib.sha256(data).hexdigest()
    assert [p.name for p in media_files(dagma_server) if p.name == digest] == [digest]
    for mxc in (first, second):
        assert c.get(f"{V1}/download/{path_of(mxc)}").raw.content == data


def test_the_v1_download_requires_an_access_token(make_client, dagma_server) -> None:
    c = make_client()
    mxc = upload(c, b"secret-ish", "text/plain")
    anon = MatrixClient(dagma_server.base_url)
    for path in (f"download/{path_of(mxc)}", f"thumbnail/{path_of(mxc)}?width=32&height=32", "config"):
        r = anon.get(f"{V1}/{path}", expect=401)
        assert r.json["errcode"] == "M_MISSING_TOKEN"
    r = MatrixClient(dagma_server.base_url, "not-a-token").get(f"{V1}/download/{path_of(mxc)}", expect=401)
    assert r.json["errcode"] == "M_UNKNOWN_TOKEN"
    for path in ("upload", "../v1/create"):
        assert anon.post(f"{V3}/{path}", content=b"x", expect=401).json["errcode"] == "M_MISSING_TOKEN"
    # Control: with the token, the same download works.
    assert c.get(f"{V1}/download/{path_of(mxc)}").raw.content == b"secret-ish"
    # The deprecated query-parameter token is still honoured (nio uses it).
    r = anon.get(f"{V1}/download/{path_of(mxc)}", params={"access_token": c.access_token})
    assert r.raw.content == b"secret-ish"


def test_legacy_endpoints_do_not_serve_media_uploaded_under_authenticated_media(
    make_client, dagma_server
) -> None:
    c = make_client()
    mxc = upload(c, images.png(64, 64))
    anon = MatrixClient(dagma_server.base_url)
    assert anon.get(f"{V3}/download/{path_of(mxc)}", expect=404).json["errcode"] == "M_NOT_FOUND"
    assert (
        anon.get(f"{V3}/thumbnail/{path_of(mxc)}?width=32&height=32", expect=404).json["errcode"]
        == "M_NOT_FOUND"
    )
    # Control: the authenticated path serves it.
    assert c.get(f"{V1}/download/{path_of(mxc)}").raw.content == images.png(64, 64)


def test_legacy_download_serves_media_when_authenticated_media_is_off(small_server) -> None:
    c = client_for(small_server)
    data = images.png(30, 20)
    mxc = upload(c, data, filename="legacy.png")
    anon = MatrixClient(small_server.base_url)
    r = anon.get(f"{V3}/download/{path_of(mxc)}", spec="/media/v3/download/{serverName}/{mediaId}")
    assert r.raw.content == data and r.raw.headers["Content-Disposition"] == 'inline; filename="legacy.png"'
    r = anon.get(
        f"{V3}/download/{path_of(mxc)}/other.png", spec="/media/v3/download/{serverName}/{mediaId}/{fileName}"
    )
    assert r.raw.content == data and r.raw.headers["Content-Disposition"] == 'inline; filename="other.png"'
    r = anon.get(f"{V3}/thumbnail/{path_of(mxc)}", params={"width": 16, "height": 16, "method": "crop"})
    assert Image.open(io.BytesIO(r.raw.content)).size == (16, 16)
    assert c.get(f"{V1}/download/{path_of(mxc)}").raw.content == data


def test_media_config_reports_the_upload_limit(make_client, small_server) -> None:
    c = make_client()
    assert c.get(f"{V1}/config", spec="/media/config").json["m.upload.size"] == 50 * 1024 * 1024
    assert c.get(f"{V3}/config", spec="/media/v3/config").json["m.upload.size"] == 50 * 1024 * 1024
    small = client_for(small_server)
    assert small.get(f"{V1}/config", spec="/media/config").json == {"m.upload.size": SMALL_LIMIT}


def test_uploads_over_max_upload_size_are_refused_with_413(small_server) -> None:
    c = client_for(small_server)
    r = c.post(f"{V3}/upload", content=b"x" * (SMALL_LIMIT + 1), expect=413, spec="/media/v3/upload")
    assert r.json["errcode"] == "M_TOO_LARGE"

    # Without Content-Length (chunked), the streamed read stops at the limit.
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"y" * 1024

    chunked = httpx.post(
        small_server.base_url + f"{V3}/upload",
        content=chunks(),
        headers={"Authorization": f"Bearer {c.access_token}", "Content-Type": "text/plain"},
    )
    assert chunked.status_code == 413 and chunked.json()["errcode"] == "M_TOO_LARGE"
    before = len(media_files(small_server))
    # Control: exactly at the limit is accepted.
    mxc = upload(c, b"z" * SMALL_LIMIT, "text/plain")
    assert c.get(f"{V1}/download/{path_of(mxc)}").raw.content == b"z" * SMALL_LIMIT
    assert len(media_files(small_server)) == before + 1


def test_bad_upload_headers_are_refused(make_client) -> None:
    c = make_client()
    r = c.post(f"{V3}/upload", content=b"x", headers={"Content-Type": "not a type"}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = c.post(f"{V3}/upload", content=b"x", params={"filename": "a\nb"}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    # Control: no Content-Type at all means application/octet-stream, served as an attachment.
    r = c.request("POST", f"{V3}/upload", content=b"raw", headers={"Content-Type": ""})
    got = c.get(f"{V1}/download/{path_of(r.json['content_uri'])}")
    assert got.raw.headers["Content-Type"] == "application/octet-stream"
    assert got.raw.headers["Content-Disposition"] == "attachment"


# --------------------------------------------------------------------------- names never become paths


@pytest.mark.parametrize(
    ("server_part", "media_part", "status"),
    [
        ("..%2F..%2Fetc", "passwd", 400),
        ("localhost", "..%2F..%2Fetc%2Fpasswd", 404),
        ("localhost", "%2E%2E", 404),  # ".." (an HTTP client would normalise a literal one away)
        ("%2E%2E", "%2E%2E", 404),  # ".." is a dns-name by the grammar: just not ours
        ("localhost", "a" * 5000, 404),
        ("a" * 5000, "abc", 400),
        ("localhost", "abc%00", 400),  # NUL: refused by the request wrapper, as on every endpoint
        ("local%00host", "abc", 400),
        ("localhost", "abc%2Fdef", 404),
        ("localhost", "%C3%A9t%C3%A9", 404),
        ("localhost", "%FF", 400),
        ("localhost", "doesnotexist", 404),
    ],
)
def test_traversal_overlong_and_unknown_names_are_refused(
    make_client, dagma_server, server_part, media_part, status
) -> None:
    c = make_client()
    before = sorted(media_files(dagma_server))
    for path in (
        f"{V1}/download/{server_part}/{media_part}",
        f"{V1}/download/{server_part}/{media_part}/name.txt",
        f"{V1}/thumbnail/{server_part}/{media_part}?width=32&height=32",
        f"{V3}/download/{server_part}/{media_part}",
    ):
        r = c.get(path, expect=status)
        assert r.json["errcode"] in ("M_INVALID_PARAM", "M_NOT_FOUND")
    r = c.put(f"{V3}/upload/{server_part}/{media_part}", content=b"payload", expect=None)
    assert r.status in (400, 404) and r.json["errcode"] in ("M_INVALID_PARAM", "M_NOT_FOUND")
    assert sorted(media_files(dagma_server)) == before  # nothing was written


def test_another_servers_media_that_cannot_be_fetched_is_a_502_naming_it(make_client, dagma_server) -> None:
    """Other servers' media is fetched over federation on the authenticated paths only
    (tests/federation/test_remote_media.py has the fetches that work)."""
    c = make_client()
    before = sorted(media_files(dagma_server))
    for path in (
        f"{V1}/download/remote.example.org/abcdef",
        f"{V1}/thumbnail/remote.example.org/abcdef?width=8&height=8",
    ):
        r = c.get(path, expect=502)
        assert r.json["errcode"] == "M_UNKNOWN" and "remote.example.org" in r.json["error"]
    # The legacy unauthenticated endpoint does not fetch (media "freeze").
    assert c.get(f"{V3}/download/remote.example.org/abcdef", expect=404).json["errcode"] == "M_NOT_FOUND"
    assert sorted(media_files(dagma_server)) == before


# --------------------------------------------------------------------------- browser safety


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", b"<html><script>alert(document.cookie)</script></html>"),
        ("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"),
        (
            "application/xhtml+xml",
            b"<html xmlns='http://www.w3.org/1999/xhtml'><script>alert(1)</script></html>",
        ),
        ("application/javascript", b"alert(1)"),
    ],
)
def test_active_content_is_served_as_attachment_with_a_sandbox(
    make_client, content_type: str, body: bytes
) -> None:
    c = make_client()
    mxc = upload(c, body, content_type, filename="evil.html")
    r = c.get(f"{V1}/download/{path_of(mxc)}")
    assert r.raw.content == body
    assert r.raw.headers["Content-Disposition"] == 'attachment; filename="evil.html"'
    assert r.raw.headers["X-Content-Type-Options"] == "nosniff"
    assert r.raw.headers["Content-Security-Policy"] == CSP


def test_a_png_is_served_inline_with_the_same_protective_headers(make_client) -> None:
    c = make_client()
    r = c.get(f"{V1}/download/{path_of(upload(c, images.png(10, 10), filename='ok.png'))}")
    assert r.raw.headers["Content-Disposition"] == 'inline; filename="ok.png"'
    assert r.raw.headers["X-Content-Type-Options"] == "nosniff"
    assert r.raw.headers["Content-Security-Policy"] == CSP
    assert r.raw.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    # Plain text is inline with an explicit charset (no sniffing of one).
    r = c.get(f"{V1}/download/{path_of(upload(c, b'hello', 'text/plain'))}")
    assert r.raw.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.raw.headers["Content-Disposition"] == "inline"


# --------------------------------------------------------------------------- thumbnails


def thumbnail(c: MatrixClient, mxc: str, **params: Any) -> httpx.Response:
    r = c.get(f"{V1}/thumbnail/{path_of(mxc)}", params=params, spec="/media/thumbnail/{serverName}/{mediaId}")
    return r.raw


def test_thumbnails_have_the_requested_bounds_for_scale_and_crop(make_client) -> None:
    c = make_client()
    mxc = upload(c, images.jpeg(1200, 600), "image/jpeg")
    scaled = thumbnail(c, mxc, width=320, height=240, method="scale")
    assert scaled.headers["Content-Type"] == "image/jpeg"
    assert scaled.headers["Content-Disposition"] == 'inline; filename="thumbnail.jpg"'
    assert scaled.headers["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(scaled.content)).size == (320, 160)
    cropped = thumbnail(c, mxc, width=96, height=96, method="crop")
    assert Image.open(io.BytesIO(cropped.content)).size == (96, 96)
    odd = thumbnail(c, mxc, width=150, height=50, method="crop")
    assert Image.open(io.BytesIO(odd.content)).size == (150, 50)
    # Asked twice, the second answer is the stored thumbnail: same bytes.
    assert thumbnail(c, mxc, width=96, height=96, method="crop").content == cropped.content
    # Huge requests are clamped, never upscaled past the source.
    huge = thumbnail(c, mxc, width=100000, height=100000, method="scale")
    assert Image.open(io.BytesIO(huge.content)).size == (1200, 600)


def test_many_distinct_thumbnail_sizes_are_served_but_only_a_bounded_number_kept(
    make_client, dagma_server
) -> None:
    c = make_client()
    mxc = upload(c, images.png(200, 200, (5, 6, 7)))
    before = set(media_files(dagma_server))
    for side in range(10, 51):
        got = thumbnail(c, mxc, width=side, height=side, method="crop")
        assert Image.open(io.BytesIO(got.content)).size == (side, side)
    kept = set(media_files(dagma_server)) - before
    assert 0 < len(kept) <= 32  # dagcore.actions.media.MAX_STORED_THUMBNAILS


def test_animated_thumbnails_keep_the_first_frame_unless_animation_is_asked(make_client) -> None:
    c = make_client()
    mxc = upload(c, images.animated_gif(400, 400, (images.RED, images.BLUE)), "image/gif")
    still = thumbnail(c, mxc, width=100, height=100, method="scale")
    assert still.headers["Content-Type"] == "image/png"
    frame = Image.open(io.BytesIO(still.content))
    assert not getattr(frame, "is_animated", False)
    r, _, b = images.rgb(frame, (50, 50))
    assert r > 200 and b < 50
    moving = thumbnail(c, mxc, width=100, height=100, method="scale", animated="true")
    assert moving.headers["Content-Type"] == "image/webp"
    anim = Image.open(io.BytesIO(moving.content))
    assert images.n_frames(anim) == 2 and anim.size == (100, 100)
    # animated=false is explicit: static.
    assert thumbnail(c, mxc, width=100, height=100, animated="false").headers["Content-Type"] == "image/png"


def test_non_images_and_bad_parameters_get_400(make_client) -> None:
    c = make_client()
    text = upload(c, b"just text", "text/plain")
    svg = upload(c, b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")
    fake = upload(c, b"not really a png", "image/png")
    for mxc in (text, svg, fake):
        r = c.get(
            f"{V1}/thumbnail/{path_of(mxc)}",
            params={"width": 32, "height": 32},
            expect=400,
            spec="/media/thumbnail/{serverName}/{mediaId}",
        )
        assert r.json["errcode"] == "M_UNKNOWN"
    png = upload(c, images.png(64, 64))
    for params in (
        {"width": -5, "height": 10},
        {"width": "abc", "height": 10},
        {"height": 10},
        {"width": 5, "height": 5, "method": "zoom"},
    ):
        r = c.get(
            f"{V1}/thumbnail/{path_of(png)}",
            params=params,
            expect=400,
            spec="/media/thumbnail/{serverName}/{mediaId}",
        )
        assert r.json["errcode"] in ("M_INVALID_PARAM", "M_MISSING_PARAM")


def test_a_decompression_bomb_gets_no_thumbnail_and_the_server_lives_on(make_client) -> None:
    c = make_client()
    for bomb in (images.png_bomb(), images.png_bomb(8000, 8000)):
        mxc = upload(c, bomb)
        r = c.get(
            f"{V1}/thumbnail/{path_of(mxc)}",
            params={"width": 96, "height": 96, "method": "crop"},
            expect=413,
            spec="/media/thumbnail/{serverName}/{mediaId}",
        )
        assert r.json["errcode"] == "M_TOO_LARGE"
        assert c.get(f"{V1}/download/{path_of(mxc)}").raw.content == bomb
    c.get("/_matrix/client/versions", spec="/versions")
    # Control: a real image on the same server still gets its thumbnail.
    assert Image.open(
        io.BytesIO(thumbnail(c, upload(c, images.png(500, 500)), width=32, height=32).content)
    ).size == (32, 32)


# --------------------------------------------------------------------------- asynchronous uploads


def test_create_then_upload_only_by_the_creator_and_only_once(make_client) -> None:
    alice, bob = make_client(), make_client()
    created = alice.post("/_matrix/media/v1/create", {}, spec="/media/v1/create").json
    mxc = created["content_uri"]
    assert created["unused_expires_at"] > 0
    r = alice.get(f"{V1}/download/{path_of(mxc)}", expect=504, spec="/media/download/{serverName}/{mediaId}")
    assert r.json["errcode"] == "M_NOT_YET_UPLOADED"
    put = f"{V3}/upload/{path_of(mxc)}"
    spec = "/media/v3/upload/{serverName}/{mediaId}"
    r = bob.put(put, content=b"hijack", headers={"Content-Type": "text/plain"}, expect=403, spec=spec)
    assert r.json["errcode"] == "M_FORBIDDEN"
    data = images.png(20, 20)
    r = alice.put(
        put, content=data, headers={"Content-Type": "image/png"}, params={"filename": "later.png"}, spec=spec
    )
    assert r.json == {}
    r = alice.put(put, content=b"again", headers={"Content-Type": "text/plain"}, expect=409, spec=spec)
    assert r.json["errcode"] == "M_CANNOT_OVERWRITE_MEDIA"
    got = bob.get(f"{V1}/download/{path_of(mxc)}")
    assert (
        got.raw.content == data and got.raw.headers["Content-Disposition"] == 'inline; filename="later.png"'
    )
    r = alice.put(f"{V3}/upload/localhost/neverCreated123", content=b"x", expect=404, spec=spec)
    assert r.json["errcode"] == "M_NOT_FOUND"


def test_pending_creates_are_limited_per_user(make_client) -> None:
    c = make_client()
    for _ in range(5):
        c.post("/_matrix/media/v1/create", {}, spec="/media/v1/create")
    r = c.post("/_matrix/media/v1/create", {}, expect=429, spec="/media/v1/create")
    assert r.json["errcode"] == "M_LIMIT_EXCEEDED"
    make_client().post("/_matrix/media/v1/create", {}, spec="/media/v1/create")  # control


def test_creating_media_is_rate_limited_per_user(tmp_path) -> None:
    """``rc_media_create`` covers both ways of making a new MXC URI (upload and create)."""
    server = LiveServer(tmp_path, config={"rc_media_create": {"per_second": 0.001, "burst_count": 2}}).start()
    try:
        alice = client_for(server)
        upload(alice, b"one", "text/plain")
        alice.post("/_matrix/media/v1/create", {}, spec="/media/v1/create")
        r = alice.post(f"{V3}/upload", content=b"three", headers={"Content-Type": "text/plain"}, expect=429)
        assert r.json["errcode"] == "M_LIMIT_EXCEEDED" and r.json["retry_after_ms"] > 0
        r = alice.post("/_matrix/media/v1/create", {}, expect=429, spec="/media/v1/create")
        assert r.json["errcode"] == "M_LIMIT_EXCEEDED"
        upload(client_for(server), b"control", "text/plain")  # another user has their own allowance
    finally:
        server.destroy()


# --------------------------------------------------------------------------- quarantine


def test_quarantined_media_is_no_longer_served(make_client, dagma_server) -> None:
    c = make_client()
    data = images.png(71, 17, (9, 9, 9))
    mxc = upload(c, data)
    other = upload(c, images.png(17, 71))
    assert c.get(f"{V1}/download/{path_of(mxc)}").raw.content == data
    media_id = mxc.rsplit("/", 1)[1]
    done = dagma_server.manage(
        "shell",
        "-c",
        "from dagcore.store.media import quarantine_media; "
        f"print(quarantine_media(server_name='localhost', media_id='{media_id}', quarantined_by='@admin:localhost'))",
    )
    assert done.stdout.decode().strip().endswith("True"), done.stderr.decode()[-2000:]
    for path in (f"download/{path_of(mxc)}", f"thumbnail/{path_of(mxc)}?width=32&height=32"):
        assert c.get(f"{V1}/{path}", expect=404).json["errcode"] == "M_NOT_FOUND"
    # The same bytes uploaded again are quarantined too; other media is unaffected.
    again = upload(make_client(), data)
    c.get(f"{V1}/download/{path_of(again)}", expect=404)
    c.get(f"{V1}/download/{path_of(other)}")


# --------------------------------------------------------------------------- URL previews


def test_url_previews_are_off_by_default(make_client) -> None:
    c = make_client()
    r = c.get(f"{V1}/preview_url", params={"url": "https://matrix.org"}, expect=404)
    assert r.json["errcode"] == "M_UNRECOGNIZED"


def test_url_preview_of_a_local_address_is_refused_by_default(small_server) -> None:
    c = client_for(small_server)
    with webserver.serve() as site:
        for path in (f"{V1}/preview_url", f"{V3}/preview_url"):
            r = c.get(path, params={"url": webserver.base_url(site) + "/page"}, expect=403)
            assert r.json["errcode"] == "M_FORBIDDEN"
        assert site.hits == []  # never contacted
        r = c.get(f"{V1}/preview_url", params={"url": "file:///etc/passwd"}, expect=400)
        assert r.json["errcode"] == "M_INVALID_PARAM"
        assert c.get(f"{V1}/preview_url", expect=400).json["errcode"] == "M_MISSING_PARAM"


def test_url_preview_of_a_whitelisted_local_server_returns_opengraph(whitelist_server) -> None:
    c = client_for(whitelist_server)
    with webserver.serve() as site:
        url = webserver.base_url(site) + "/redirect"
        og = c.get(
            f"{V1}/preview_url", params={"url": url, "ts": 1510610716656}, spec="/media/preview_url"
        ).json
        assert og["og:title"] == "Dagma & friends"
        assert og["og:description"] == "A Matrix homeserver"
        assert og["og:image"].startswith("mxc://localhost/")
        assert og["og:image:type"] == "image/png"
        assert (og["og:image:width"], og["og:image:height"]) == (300, 200)
        assert og["matrix:image:size"] == len(webserver.PAGE_IMAGE)
        image = c.get(f"{V1}/download/{path_of(og['og:image'])}")
        assert image.raw.content == webserver.PAGE_IMAGE
        # Cached: asking again does not fetch again.
        hits = len(site.hits)
        again = c.get(f"{V3}/preview_url", params={"url": url}, spec="/media/v3/preview_url").json
        assert again == og and len(site.hits) == hits
        # A redirect to a refused address is refused at that hop.
        r = c.get(
            f"{V1}/preview_url",
            params={"url": webserver.base_url(site) + "/redirect-to-ipv6-loopback"},
            expect=403,
        )
        assert r.json["errcode"] == "M_FORBIDDEN"
        plain = c.get(
            f"{V1}/preview_url",
            params={"url": webserver.base_url(site) + "/plain"},
            spec="/media/preview_url",
        )
        assert plain.json == {}

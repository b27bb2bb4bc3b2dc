"""Media across servers, one server's side: our media served to other servers (multipart answers
over X-Matrix), and other servers' media fetched for our users into the remote-media cache.

Spec: server-server API "Content Repository" (https://spec.matrix.org/v1.19/server-server-api/#content-repository).
The remote is a fake HTTPS homeserver on 127.0.0.1; the address policy blacklists loopback
except 127.0.0.1, so an "internal service" on 127.0.0.2 must never be reached.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import Client, RequestFactory

from dagcore.actions import media as media_actions
from dagcore.actions import remote_media
from dagcore.federation.client import FederationPolicy
from dagcore.http.errors import MatrixError
from dagcore.media import multipart
from dagcore.media.filestore import get_file_store
from dagcore.models import LocalMedia, RemoteMedia, RemoteMediaThumbnail
from dagcore.net.ssrf import IpPolicy
from dagcore.protocol.request_auth import authorization_header
from dagcore.server_keys import get_server_name
from dagcore.tasks.media import purge_media_retention
from dagma_project.config import DEFAULT_IP_RANGE_BLACKLIST
from embassy.http import raw_request_uri
from tests.federation.certs import TestCA
from tests.federation.conftest import make_client
from tests.federation.https_server import Answer, FakeHomeserver, Recorded
from tests.federation.inbound_support import trust
from tests.media import images
from tests.support.events import RemoteServer

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db]

ALICE = f"@alice:{settings.SERVER_NAME}"
MEDIA_PATH = "/_matrix/federation/v1/media/download/{}"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path: Path) -> Path:
    settings.MEDIA_STORE_PATH = tmp_path / "media"
    return tmp_path


@pytest.fixture
def conf(settings) -> Callable[[str, object], None]:
    def set_option(name: str, value: object) -> None:
        settings.DAGMA = dataclasses.replace(settings.DAGMA, **{name: value})

    return set_option


# --------------------------------------------------------------------------- serving ours


@pytest.fixture
def remote() -> RemoteServer:
    server = RemoteServer("remote.test")
    trust(server)
    return server


def upload(data: bytes, content_type: str = "image/png", name: str | None = "cat.png") -> str:
    blob = get_file_store().write_bytes(data)
    size = media_actions.probe_image_size(sha256=blob.sha256, content_type=content_type)
    meta = media_actions.UploadMetadata(content_type=content_type, upload_name=name)
    mxc = media_actions.do_record_upload(uploader=ALICE, meta=meta, blob=blob, size=size)
    return mxc.rsplit("/", 1)[1]


def signed_get(remote: RemoteServer, path: str, *, sign: bool = True) -> Any:
    headers: dict[str, Any] = {}
    if sign:
        headers["HTTP_AUTHORIZATION"] = authorization_header(
            method="GET",
            uri=raw_request_uri(RequestFactory().get(path)),
            origin=remote.server_name,
            destination=get_server_name(),
            signing_key=remote.key,
            content=None,
        )
    return Client().get(path, **headers)


def _parts(response: Any) -> multipart.MediaPart:
    assert response.status_code == 200, response.content[:300]
    return multipart.parse_media_answer(response.content, response["Content-Type"])


def test_a_download_answers_multipart_with_metadata_then_the_bytes(remote) -> None:
    data = images.png(40, 30)
    media_id = upload(data)
    part = _parts(signed_get(remote, MEDIA_PATH.format(media_id)))
    assert part.metadata == {}
    assert part.content == data and part.location is None
    assert part.headers["content-type"] == "image/png"
    assert part.headers["content-disposition"] == 'inline; filename="cat.png"'


def test_a_thumbnail_answers_multipart_with_an_image_of_the_asked_size(remote) -> None:
    media_id = upload(images.png(400, 300))
    response = signed_get(
        remote, f"/_matrix/federation/v1/media/thumbnail/{media_id}?width=32&height=32&method=crop"
    )
    part = _parts(response)
    assert part.headers["content-type"] == "image/png" and part.content is not None
    assert images.open_image(part.content).size == (32, 32)


@pytest.mark.parametrize(
    ("path", "status", "errcode"),
    [
        (MEDIA_PATH.format("unknownMediaId"), 404, "M_NOT_FOUND"),
        (MEDIA_PATH.format("bad.id"), 404, "M_NOT_FOUND"),
        (MEDIA_PATH.format("%2E%2E"), 404, "M_NOT_FOUND"),
        ("/_matrix/federation/v1/media/thumbnail/{id}", 400, "M_MISSING_PARAM"),
        ("/_matrix/federation/v1/media/thumbnail/{id}?width=-1&height=3", 400, "M_INVALID_PARAM"),
        ("/_matrix/federation/v1/media/thumbnail/{id}?width=3&height=3&method=zoom", 400, "M_INVALID_PARAM"),
        ("/_matrix/federation/v1/media/thumbnail/{text}?width=3&height=3", 400, "M_UNKNOWN"),
    ],
)
def test_bad_media_requests_get_matrix_errors(remote, path: str, status: int, errcode: str) -> None:
    image = upload(images.png(20, 20))
    text = upload(b"just text", "text/plain", "a.txt")
    response = signed_get(remote, path.format(id=image, text=text))
    assert (response.status_code, response.json()["errcode"]) == (status, errcode)


def test_unsigned_pending_and_quarantined_media_are_not_served(remote) -> None:
    media_id = upload(images.png(20, 20))
    assert signed_get(remote, MEDIA_PATH.format(media_id), sign=False).status_code == 401
    pending = media_actions.do_create_pending_media(uploader=ALICE)["content_uri"].rsplit("/", 1)[1]
    response = signed_get(remote, MEDIA_PATH.format(pending))
    assert (response.status_code, response.json()["errcode"]) == (504, "M_NOT_YET_UPLOADED")
    LocalMedia.objects.filter(media_id=media_id).update(quarantined=True)
    assert signed_get(remote, MEDIA_PATH.format(media_id)).status_code == 404


# --------------------------------------------------------------------------- fetching theirs


class InternalListener:
    """A plain TCP listener on 127.0.0.2 (blacklisted loopback) that records every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.2", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def internal() -> Iterator[InternalListener]:
    listener = InternalListener()
    yield listener
    listener.close()


@pytest.fixture
def theirs(fake_server: FakeHomeserver, test_ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> FakeHomeserver:
    """The fake remote, reached through a client whose policy allows 127.0.0.1 only."""
    policy = FederationPolicy(
        ip_policy=IpPolicy.from_config(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.1/32"]),
        custom_ca_files=(str(test_ca.cert_path),),
    )
    client = make_client(policy, server_name=get_server_name())
    monkeypatch.setattr(remote_media, "get_federation_client", lambda: client)
    return fake_server


def _name(server: FakeHomeserver) -> str:
    return f"127.0.0.1:{server.port}"


def _media_answer(data: bytes, content_type: str = "image/png", name: str = "dog.png") -> Answer:
    boundary = multipart.new_boundary()
    body = multipart.build_media_answer(
        boundary=boundary,
        content_type=content_type,
        content_disposition=f'inline; filename="{name}"',
        content=data,
    )
    return 200, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, body


def _location_answer(url: str) -> Answer:
    body = (
        b"\r\n--b0undary\r\nContent-Type: application/json\r\n\r\n{}\r\n--b0undary\r\nLocation: "
        + url.encode()
        + b"\r\n\r\n\r\n--b0undary--\r\n"
    )
    return 200, {"Content-Type": "multipart/mixed; boundary=b0undary"}, body


def fetch(server: str, media_id: str) -> RemoteMedia:
    return async_to_sync(remote_media.access_remote_media)(server_name=server, media_id=media_id)


def download(server: str, media_id: str, *, legacy: bool = False) -> bytes:
    content = async_to_sync(remote_media.access_media_download)(
        server_name=server, media_id=media_id, legacy=legacy
    )
    assert content.path is not None
    return content.path.read_bytes()


def fetch_error(server: str, media_id: str) -> MatrixError:
    with pytest.raises(MatrixError) as exc:
        fetch(server, media_id)
    return exc.value


def test_remote_media_is_fetched_signed_once_and_then_served_from_the_cache(theirs) -> None:
    data = images.png(60, 40)
    theirs.routes[MEDIA_PATH.format("dogId")] = lambda _r: _media_answer(data)
    assert download(_name(theirs), "dogId") == data
    assert download(_name(theirs), "dogId") == data
    assert len(theirs.requests) == 1
    assert theirs.requests[0].authorization[0].startswith("X-Matrix ")
    row = RemoteMedia.objects.get(server_name=_name(theirs), media_id="dogId")
    assert (row.content_type, row.upload_name, row.size) == ("image/png", "dog.png", len(data))
    assert get_file_store().read_bytes(row.sha256) == data


def test_concurrent_requests_for_the_same_remote_media_share_one_fetch(
    theirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = images.png(30, 30)
    release = threading.Event()

    def slow(_r: Recorded) -> Answer:
        release.wait(30)
        return _media_answer(data)

    theirs.routes[MEDIA_PATH.format("busyId")] = slow
    joined: list[bool] = []
    real_start = remote_media._start_fetch

    def counting(key: tuple[str, str]) -> Any:
        future, leader = real_start(key)
        joined.append(leader)
        return future, leader

    monkeypatch.setattr(remote_media, "_start_fetch", counting)

    async def many() -> list[RemoteMedia]:
        import asyncio

        tasks = [
            asyncio.ensure_future(
                remote_media.access_remote_media(server_name=_name(theirs), media_id="busyId")
            )
            for _ in range(5)
        ]
        deadline = time.monotonic() + 30
        while len(joined) < 5:  # every request is waiting on a fetch
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        release.set()
        return list(await asyncio.gather(*tasks))

    rows = async_to_sync(many)()
    assert joined.count(True) == 1
    assert len(theirs.requests) == 1
    assert {r.pk for r in rows} == {RemoteMedia.objects.get(media_id="busyId").pk}


def test_media_larger_than_max_upload_size_is_refused_naming_the_server_and_nothing_is_kept(
    theirs, conf
) -> None:
    conf("max_upload_size", 1000)
    big = os.urandom(5000)
    theirs.routes[MEDIA_PATH.format("bigId")] = lambda _r: _media_answer(big, "application/octet-stream")
    error = fetch_error(_name(theirs), "bigId")
    assert (error.status, error.errcode) == (502, "M_TOO_LARGE")
    assert _name(theirs) in error.error
    assert not RemoteMedia.objects.exists()
    content_dir = get_file_store().content_dir
    assert not content_dir.exists() or not any(p.is_file() for p in content_dir.rglob("*"))
    # Just under the cap (framing aside) passes.
    small = os.urandom(1000)
    theirs.routes[MEDIA_PATH.format("okId")] = lambda _r: _media_answer(small, "application/octet-stream")
    assert download(_name(theirs), "okId") == small


def test_a_location_answer_is_followed_and_its_bytes_cached(theirs) -> None:
    data = images.png(20, 10)
    url = f"https://127.0.0.1:{theirs.port}/cdn/abc"
    theirs.routes[MEDIA_PATH.format("cdnId")] = lambda _r: _location_answer(url)
    theirs.routes["/cdn/abc"] = lambda _r: (302, {"Location": "/cdn/real"}, b"")
    theirs.routes["/cdn/real"] = lambda _r: (200, {"Content-Type": "image/png"}, data)
    assert download(_name(theirs), "cdnId") == data
    assert [r.path for r in theirs.requests] == [MEDIA_PATH.format("cdnId"), "/cdn/abc", "/cdn/real"]
    # The CDN is not sent our signature.
    assert all(not r.authorization for r in theirs.requests[1:])


def test_a_location_or_redirect_to_a_blacklisted_address_never_reaches_it(theirs, internal) -> None:
    inside = f"https://127.0.0.2:{internal.port}/admin"
    theirs.routes[MEDIA_PATH.format("ssrfId")] = lambda _r: _location_answer(inside)
    error = fetch_error(_name(theirs), "ssrfId")
    assert error.status == 502 and _name(theirs) in error.error and "blocked" in error.error
    # A redirect from an allowed location to the internal one is refused the same way.
    theirs.routes[MEDIA_PATH.format("hopId")] = lambda _r: _location_answer(
        f"https://127.0.0.1:{theirs.port}/hop"
    )
    theirs.routes["/hop"] = lambda _r: (307, {"Location": inside}, b"")
    assert fetch_error(_name(theirs), "hopId").status == 502
    # A plain http location is not followed at all.
    theirs.routes[MEDIA_PATH.format("httpId")] = lambda _r: _location_answer(
        f"http://127.0.0.1:{internal.port}/"
    )
    assert fetch_error(_name(theirs), "httpId").status == 502
    assert internal.connections == 0
    assert not RemoteMedia.objects.exists()


def test_an_older_server_is_asked_on_the_legacy_download(theirs) -> None:
    data = b"hello from an old server"
    theirs.routes[MEDIA_PATH.format("oldId")] = lambda _r: (404, {}, b'{"errcode":"M_UNRECOGNIZED"}')
    legacy = (
        f"/_matrix/media/v3/download/127.0.0.1%3A{theirs.port}/oldId?allow_remote=false&allow_redirect=false"
    )
    theirs.routes[legacy] = lambda _r: (
        200,
        {"Content-Type": "text/plain", "Content-Disposition": "attachment; filename*=utf-8''h%C3%A9.txt"},
        data,
    )
    assert download(_name(theirs), "oldId") == data
    row = RemoteMedia.objects.get(media_id="oldId")
    assert (row.content_type, row.upload_name) == ("text/plain", "hé.txt")
    assert not theirs.requests[1].authorization


@pytest.mark.parametrize(
    ("answer", "status", "errcode"),
    [
        ((404, {}, b'{"errcode":"M_NOT_FOUND"}'), 404, "M_NOT_FOUND"),
        ((504, {}, b'{"errcode":"M_NOT_YET_UPLOADED"}'), 504, "M_NOT_YET_UPLOADED"),
        ((500, {}, b"oops"), 502, "M_UNKNOWN"),
        ((200, {"Content-Type": "application/json"}, b"{}"), 502, "M_UNKNOWN"),
        (
            (200, {"Content-Type": "multipart/mixed; boundary=x"}, b"--x\r\n\r\nnot two parts\r\n--x--"),
            502,
            "M_UNKNOWN",
        ),
    ],
)
def test_bad_remote_answers_fail_that_request_naming_the_server(
    theirs, answer: Answer, status: int, errcode: str
) -> None:
    theirs.routes[MEDIA_PATH.format("badId")] = lambda _r: answer
    error = fetch_error(_name(theirs), "badId")
    assert (error.status, error.errcode) == (status, errcode)
    assert _name(theirs) in error.error
    assert not RemoteMedia.objects.exists()


def test_an_unreachable_server_is_a_502_naming_it(theirs) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    error = fetch_error(f"127.0.0.1:{port}", "someId")
    assert error.status == 502 and f"127.0.0.1:{port}" in error.error


def test_remote_thumbnails_are_rendered_from_the_cached_original(theirs) -> None:
    theirs.routes[MEDIA_PATH.format("bigPic")] = lambda _r: _media_answer(images.png(300, 200))
    request = media_actions.ThumbnailRequest(width=50, height=50, method="crop", animated=False)
    content = async_to_sync(remote_media.access_media_thumbnail)(
        server_name=_name(theirs), media_id="bigPic", request=request, legacy=False
    )
    assert content.data is not None and images.open_image(content.data).size == (50, 50)
    again = async_to_sync(remote_media.access_media_thumbnail)(
        server_name=_name(theirs), media_id="bigPic", request=request, legacy=False
    )
    assert again.path is not None and again.path.read_bytes() == content.data
    assert RemoteMediaThumbnail.objects.count() == 1 and len(theirs.requests) == 1


def test_legacy_unauthenticated_endpoints_do_not_fetch_remote_media(theirs) -> None:
    theirs.routes[MEDIA_PATH.format("dogId")] = lambda _r: _media_answer(b"x")
    with pytest.raises(MatrixError) as exc:
        download(_name(theirs), "dogId", legacy=True)
    assert exc.value.status == 404 and not theirs.requests


def test_quarantined_remote_media_is_not_served_nor_fetched_again(theirs) -> None:
    theirs.routes[MEDIA_PATH.format("dogId")] = lambda _r: _media_answer(b"bad bytes", "text/plain")
    fetch(_name(theirs), "dogId")
    from dagcore.store import media as media_store

    assert media_store.quarantine_media(server_name=_name(theirs), media_id="dogId")
    assert fetch_error(_name(theirs), "dogId").status == 404
    assert len(theirs.requests) == 1


def test_retention_purges_remote_media_nobody_read_and_keeps_the_rest(theirs, conf) -> None:
    conf("media_retention", {"remote_media_lifetime": "14d"})
    theirs.routes[MEDIA_PATH.format("oldId")] = lambda _r: _media_answer(b"old remote bytes", "text/plain")
    theirs.routes[MEDIA_PATH.format("newId")] = lambda _r: _media_answer(b"new remote bytes", "text/plain")
    old, new = fetch(_name(theirs), "oldId"), fetch(_name(theirs), "newId")
    store = get_file_store()
    for sha in (old.sha256, new.sha256):
        os.utime(store.blob_path(sha), (time.time() - 7200, time.time() - 7200))
    RemoteMedia.objects.filter(pk=old.pk).update(last_access_ts=int(time.time() * 1000) - 15 * 86_400_000)
    assert purge_media_retention.run() == 1
    assert list(RemoteMedia.objects.values_list("media_id", flat=True)) == ["newId"]
    assert not store.exists(old.sha256) and store.exists(new.sha256)
    # Asked again, it is fetched again.
    assert download(_name(theirs), "oldId") == b"old remote bytes"
    assert len(theirs.requests) == 3


def test_without_a_remote_lifetime_cached_media_is_kept(theirs) -> None:
    theirs.routes[MEDIA_PATH.format("keepId")] = lambda _r: _media_answer(b"kept", "text/plain")
    row = fetch(_name(theirs), "keepId")
    RemoteMedia.objects.filter(pk=row.pk).update(last_access_ts=1)
    assert remote_media.do_purge_remote_media(now=int(time.time() * 1000)) == 0
    assert RemoteMedia.objects.filter(pk=row.pk).exists()

"""Class 9 — media: hostile names never reach the filesystem, active content cannot run
in the server's origin, and the authenticated endpoints need a valid token."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from dagcore.actions import media as media_actions
from dagcore.http.errors import MatrixError
from tests.media import images
from tests.security.kit import assert_error
from tests.support.client import MatrixClient

V1 = "/_matrix/client/v1/media"
V3 = "/_matrix/media/v3"

HOSTILE_NAMES = [
    ("localhost", ".."),
    ("localhost", "../../etc/passwd"),
    ("..", "abc"),
    ("../../etc", "passwd"),
    ("localhost", "a" * 5000),
    ("a" * 5000, "abc"),
    ("localhost", "abc%2F..%2F..%2Fetc"),
    ("localhost%2F..", "abc"),
    ("localhost", "abc%00"),
    ("local%00host", "abc"),
    ("localhost", "%C3%A9t%C3%A9"),
    ("localhost", "%FF%FE"),
    ("localhost", "abc.def"),
    ("localhost:99999999", "abc"),
    ("[::1", "abc"),
    ("localhost", "~root"),
]


@pytest.mark.parametrize(("server_name", "media_id"), HOSTILE_NAMES)
def test_hostile_media_names_are_refused_before_any_lookup(
    monkeypatch, server_name: str, media_id: str
) -> None:
    from urllib.parse import unquote

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a hostile media name reached the store")

    monkeypatch.setattr(media_actions, "get_file_store", forbidden)
    monkeypatch.setattr(media_actions.media_store, "get_local_media", forbidden)
    server_name, media_id = unquote(server_name, errors="replace"), unquote(media_id, errors="replace")
    with pytest.raises(MatrixError) as exc:
        media_actions.get_download(server_name=server_name, media_id=media_id, legacy=False)
    assert exc.value.status in (400, 404)


def _upload(c: MatrixClient, body: bytes, content_type: str, filename: str | None = None) -> str:
    params = {"filename": filename} if filename else None
    r = c.request("POST", f"{V3}/upload", content=body, headers={"Content-Type": content_type}, params=params,
                  spec="/media/v3/upload")  # fmt: skip
    return str(r.json["content_uri"])[len("mxc://") :]


@pytest.mark.parametrize(("server_name", "media_id"), HOSTILE_NAMES)
def test_hostile_media_names_are_refused_on_every_media_path(
    make_client, server_name: str, media_id: str
) -> None:
    c = make_client()
    paths = [
        ("GET", f"{V1}/download/{server_name}/{media_id}"),
        ("GET", f"{V1}/download/{server_name}/{media_id}/x.txt"),
        ("GET", f"{V1}/thumbnail/{server_name}/{media_id}?width=32&height=32"),
        ("GET", f"{V3}/download/{server_name}/{media_id}"),
        ("GET", f"{V3}/thumbnail/{server_name}/{media_id}?width=32&height=32"),
        ("PUT", f"{V3}/upload/{server_name}/{media_id}"),
    ]
    for method, path in paths:
        r = c.request(method, path, content=b"payload" if method == "PUT" else None, expect=None)
        # 405: the client normalised a ".." segment away, so the request named no media at all.
        assert r.status in (400, 404, 405), (path, r)
        if ".." in path:
            continue  # normalised by the client into another (unknown) path: any clean 4xx will do
        assert_error(r, r.status, "M_INVALID_PARAM", "M_NOT_FOUND", "M_UNRECOGNIZED")
    # Control: a real upload is served on the same paths.
    mxc = _upload(c, b"fine", "text/plain")
    assert c.get(f"{V1}/download/{mxc}").raw.content == b"fine"


ACTIVE = [
    ("text/html", b"<script>alert(1)</script>"),
    ("TEXT/HTML; charset=utf-8", b"<script>alert(1)</script>"),
    ("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"),
    ("application/xhtml+xml", b"<html xmlns='http://www.w3.org/1999/xhtml'><script>alert(1)</script></html>"),
    ("text/javascript", b"alert(1)"),
    ("application/javascript", b"alert(1)"),
    (
        "text/xml",
        b"<?xml version='1.0'?><x:script xmlns:x='http://www.w3.org/1999/xhtml'>alert(1)</x:script>",
    ),
    ("application/octet-stream", b"<script>alert(1)</script>"),
    ("multipart/x-mixed-replace; boundary=x", b"--x\r\nContent-Type: text/html\r\n\r\n<script>1</script>"),
]


@pytest.mark.parametrize(("content_type", "body"), ACTIVE)
def test_active_content_is_an_attachment_in_a_sandbox(make_client, content_type: str, body: bytes) -> None:
    c = make_client()
    r0 = c.request("POST", f"{V3}/upload", content=body, headers={"Content-Type": content_type},
                   params={"filename": "x.png"}, expect=None)  # fmt: skip
    if r0.status == 400:
        assert_error(r0, 400)  # an unusable content type may be refused outright
        return
    mxc = str(r0.json["content_uri"])[len("mxc://") :]
    r = c.get(f"{V1}/download/{mxc}")
    headers = r.raw.headers
    assert headers["Content-Disposition"].startswith("attachment")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"].startswith("sandbox")
    assert "script-src 'none'" in headers["Content-Security-Policy"]


def test_a_file_name_cannot_inject_headers(make_client) -> None:
    c = make_client()
    for name in ("a\r\nSet-Cookie: x=1", 'a"; filename*=evil', "a\x00b", "../../../etc/passwd"):
        r = c.request("POST", f"{V3}/upload", content=b"data", headers={"Content-Type": "text/plain"},
                      params={"filename": name}, expect=None)  # fmt: skip
        if r.status != 200:
            assert_error(r, 400)
            continue
        mxc = str(r.json["content_uri"])[len("mxc://") :]
        got = c.get(f"{V1}/download/{mxc}")
        assert "set-cookie" not in {k.lower() for k in got.raw.headers}
        assert (
            "\r" not in got.raw.headers["Content-Disposition"]
            and "\n" not in got.raw.headers["Content-Disposition"]
        )
        # The name asked for in the path is encoded too.
        got = c.get(f"{V1}/download/{mxc}/{quote(name, safe='')}", expect=None)
        assert got.status in (200, 400, 404)
        assert "set-cookie" not in {k.lower() for k in got.raw.headers}


def test_the_authenticated_media_endpoints_need_a_valid_token(make_client, dagma_server) -> None:
    owner = make_client()
    mxc = _upload(owner, images.png(16, 16), "image/png")
    anon = MatrixClient(dagma_server.base_url)
    forged = MatrixClient(dagma_server.base_url, access_token="syt_forged_token")
    requests = [
        ("GET", f"{V1}/download/{mxc}", None),
        ("GET", f"{V1}/download/{mxc}/name.png", None),
        ("GET", f"{V1}/thumbnail/{mxc}?width=8&height=8", None),
        ("GET", f"{V1}/config", None),
        ("GET", f"{V1}/preview_url?url=https://example.org", None),
        ("POST", f"{V3}/upload", b"data"),
        ("POST", "/_matrix/media/v1/create", b""),
        ("GET", f"{V3}/config", None),
    ]
    for method, path, content in requests:
        r = anon.request(method, path, content=content, headers={"Content-Type": "text/plain"}, expect=None)
        assert r.status == 401 and r.json["errcode"] == "M_MISSING_TOKEN", (path, r)
        r = forged.request(method, path, content=content, headers={"Content-Type": "text/plain"}, expect=None)
        assert r.status == 401 and r.json["errcode"] == "M_UNKNOWN_TOKEN", (path, r)
    # Control: with a token, another user downloads it.
    other = make_client()
    assert other.get(f"{V1}/download/{mxc}").raw.content == images.png(16, 16)
    anon.close()
    forged.close()

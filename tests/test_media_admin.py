"""Media administration against real processes: ``manage.py purge_media`` and Synapse's media
admin API on ``serve politburo``, checked through a real client of the public server and the
files on disk of the content-addressed store (one file per distinct content)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.media import images
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer, start_with_politburo

pytestmark = pytest.mark.live

PASSWORD = "correct horse battery"
V1 = "/_matrix/client/v1/media"
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str, str]]:
    server = LiveServer(tmp_path_factory.mktemp("mediaadmin"))
    politburo = start_with_politburo(server)
    pw = server.workdir / "pw"
    pw.write_text(PASSWORD + "\n")
    made = server.manage("register_user", "root", "--admin", "--password-file", str(pw))
    assert made.returncode == 0, made.stderr
    login = MatrixClient(server.base_url).post(
        "/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "root"},
            "password": PASSWORD,
        },
        auth=False,
    )
    try:
        yield server, politburo.base_url, login.json["access_token"]
    finally:
        politburo.stop()
        server.destroy()


def admin(base: str, token: str, method: str, path: str, **params: Any) -> httpx.Response:
    return httpx.request(
        method, base + path, headers={"Authorization": f"Bearer {token}"}, json={}, params=params or None
    )


def upload(c: MatrixClient, data: bytes, content_type: str = "image/png") -> str:
    r = c.post("/_matrix/media/v3/upload", content=data, headers={"Content-Type": content_type})
    return str(r.json["content_uri"])


def media_id(mxc: str) -> str:
    return mxc.rsplit("/", 1)[1]


def blob(server: LiveServer, mxc: str) -> Path:
    [(sha,)] = server.query("SELECT sha256 FROM local_media WHERE media_id = %s", (media_id(mxc),))
    return server.workdir / "media_store" / "content" / sha[:2] / sha[2:4] / sha


def age(server: LiveServer, *mxcs: str, days: int = 40) -> None:
    """Make media look last read ``days`` ago (the purge selects by last access)."""
    server.query(
        "UPDATE local_media SET last_access_ts = last_access_ts - %s WHERE media_id = ANY(%s) RETURNING id",
        (days * DAY_MS, [media_id(m) for m in mxcs]),
    )


def status(c: MatrixClient, mxc: str, what: str = "download") -> int:
    path = mxc.removeprefix("mxc://")
    params = {"width": "32", "height": "32"} if what == "thumbnail" else None
    return c.get(f"{V1}/{what}/{path}", params=params, expect=None).status


def purge(server: LiveServer, *args: str) -> dict[str, Any]:
    done = server.manage("purge_media", *args, "--json")
    assert done.returncode == 0, done.stderr.decode()
    # The last line: the structured log lines (JSON too) come before it.
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def test_purge_media_counts_what_it_frees_and_keeps_shared_protected_quarantined_and_avatars(site) -> None:
    server, base, token = site
    alice = MatrixClient(server.base_url).register()
    shared = images.png(30, 30, (1, 2, 3))
    old_copy, new_copy = upload(alice, shared), upload(alice, shared)  # one file, two rows
    lonely = upload(alice, images.png(31, 31, (4, 5, 6)))
    avatar = upload(alice, images.png(32, 32, (7, 8, 9)))
    protected = upload(alice, images.png(33, 33, (10, 11, 12)))
    quarantined = upload(alice, images.png(34, 34, (13, 14, 15)))
    alice.put(f"/profile/{q(alice.user_id or '')}/avatar_url", {"avatar_url": avatar})
    room_avatar = upload(alice, images.png(35, 35, (16, 17, 18)))
    room = alice.create_room()
    alice.put(f"/rooms/{q(room)}/state/m.room.avatar", {"url": room_avatar})
    assert (
        admin(base, token, "POST", f"/_synapse/admin/v1/media/protect/{media_id(protected)}").status_code
        == 200
    )
    assert (
        admin(
            base, token, "POST", f"/_synapse/admin/v1/media/quarantine/{quarantined.removeprefix('mxc://')}"
        ).status_code
        == 200
    )
    age(server, old_copy, lonely, avatar, room_avatar, protected, quarantined)
    assert blob(server, old_copy) == blob(server, new_copy)
    lonely_file = blob(server, lonely)

    preview = purge(server, "--before", "30d", "--local", "--keep-profiles", "--dry-run")
    done = purge(server, "--before", "30 days ago", "--local", "--keep-profiles")
    # The old copy and the lonely item go; only the lonely item's file is freed (the other is shared).
    expected = {"local_media": 2, "remote_media": 0, "files": 1, "bytes": len(images.png(31, 31, (4, 5, 6))),
                "kept_avatars": 2}  # fmt: skip
    assert {k: preview[k] for k in expected} == expected and preview["dry_run"] is True
    assert {k: done[k] for k in expected} == expected and done["dry_run"] is False
    assert status(alice, old_copy) == 404 and status(alice, lonely) == 404
    assert status(alice, new_copy) == 200 and blob(server, new_copy).is_file()
    assert (
        status(alice, avatar) == 200 and status(alice, room_avatar) == 200 and status(alice, protected) == 200
    )
    assert server.query("SELECT count(*) FROM local_media WHERE media_id = %s", (media_id(quarantined),)) == [
        (1,)
    ]
    assert not lonely_file.exists()

    # Once the last row using the shared bytes goes, so does the file.
    shared_file = blob(server, new_copy)
    age(server, new_copy, avatar, room_avatar)  # the downloads above refreshed the avatars' last access
    again = purge(server, "--before", "30d", "--local")  # without --keep-profiles the avatars go too
    assert again["local_media"] == 3 and again["files"] == 3
    assert not shared_file.exists() and status(alice, avatar) == 404
    audit = server.query(
        "SELECT action, result, counts FROM audit_log WHERE action = 'media.purge' ORDER BY id"
    )
    assert [(a, r) for a, r, _ in audit] == [
        ("media.purge", "dry-run"),
        ("media.purge", "ok"),
        ("media.purge", "ok"),
    ]
    assert audit[1][2]["files"] == 1


def test_bad_purge_input_is_refused_and_changes_nothing(site) -> None:
    server, _, _ = site
    for args in (["--before", "yesterday-ish"], ["--before", "30d", "--size-gt", "lots"]):
        done = server.manage("purge_media", *args)
        assert done.returncode == 2 and b"not a" in done.stderr


def test_a_quarantined_item_404s_for_download_and_thumbnail_until_unquarantined(site) -> None:
    server, base, token = site
    alice = MatrixClient(server.base_url).register()
    mxc = upload(alice, images.png(64, 48, (200, 1, 1)))
    assert status(alice, mxc) == 200 and status(alice, mxc, "thumbnail") == 200
    path = mxc.removeprefix("mxc://")
    assert admin(base, token, "POST", f"/_synapse/admin/v1/media/quarantine/{path}").json() == {}
    assert status(alice, mxc) == 404 and status(alice, mxc, "thumbnail") == 404
    # The same bytes uploaded again are quarantined too.
    again = upload(alice, images.png(64, 48, (200, 1, 1)))
    assert status(alice, again) == 404
    info = admin(base, token, "GET", f"/_synapse/admin/v1/media/{path}").json()["media_info"]
    assert info["quarantined_by"] == "@root:" + server.server_name and info["media_length"] > 0
    assert admin(base, token, "POST", f"/_synapse/admin/v1/media/unquarantine/{path}").json() == {}
    assert status(alice, mxc) == 200 and status(alice, mxc, "thumbnail") == 200


def test_quarantine_a_rooms_and_a_users_media_sparing_protected_items(site) -> None:
    server, base, token = site
    alice = MatrixClient(server.base_url).register()
    bob = MatrixClient(server.base_url).register()
    room = alice.create_room()
    in_room = upload(alice, images.png(20, 21, (1, 1, 1)))
    sticker = upload(alice, images.png(20, 22, (2, 2, 2)))
    elsewhere = upload(alice, images.png(20, 23, (3, 3, 3)))
    bobs = upload(bob, images.png(20, 24, (4, 4, 4)))
    for mxc in (in_room, sticker):
        alice.put(f"/rooms/{q(room)}/send/m.room.message/{secrets.token_hex(4)}",
                  {"msgtype": "m.image", "body": "pic", "url": mxc})  # fmt: skip
    listed = admin(base, token, "GET", f"/_synapse/admin/v1/room/{q(room)}/media").json()
    assert listed == {"local": sorted([in_room, sticker]), "remote": []}
    admin(base, token, "POST", f"/_synapse/admin/v1/media/protect/{media_id(sticker)}")
    r = admin(base, token, "POST", f"/_synapse/admin/v1/room/{q(room)}/media/quarantine")
    assert r.json() == {"num_quarantined": 1}
    assert status(alice, in_room) == 404 and status(alice, sticker) == 200 and status(alice, elsewhere) == 200
    r = admin(base, token, "POST", f"/_synapse/admin/v1/user/{q(bob.user_id or '')}/media/quarantine")
    assert r.json() == {"num_quarantined": 1} and status(bob, bobs) == 404
    r = admin(base, token, "POST", f"/_synapse/admin/v1/user/{q(alice.user_id or '')}/media/quarantine")
    assert r.json() == {"num_quarantined": 1}  # the elsewhere item; the sticker stays protected
    assert status(alice, elsewhere) == 404 and status(alice, sticker) == 200


def test_media_admin_api_lists_deletes_and_counts_usage(site) -> None:
    server, base, token = site
    carol = MatrixClient(server.base_url).register()
    one = upload(carol, images.png(40, 40, (9, 9, 1)))
    two = upload(carol, images.png(40, 41, (9, 9, 2)))
    three = upload(carol, b"plain text " * 100, "text/plain")
    user = q(carol.user_id or "")
    listing = admin(base, token, "GET", f"/_synapse/admin/v1/users/{user}/media", limit="2").json()
    assert listing["total"] == 3 and listing["next_token"] == 2
    assert [m["media_id"] for m in listing["media"]] == [media_id(three), media_id(two)]  # newest first
    usage = admin(base, token, "GET", "/_synapse/admin/v1/statistics/users/media",
                  search_term=(carol.user_id or "")[1:9]).json()  # fmt: skip
    assert usage["total"] == 1 and usage["users"][0]["media_count"] == 3
    assert usage["users"][0]["media_length"] == sum(
        len(x) for x in (images.png(40, 40, (9, 9, 1)), images.png(40, 41, (9, 9, 2)), b"plain text " * 100)
    )
    # Delete one: its file goes, the answer is Synapse's.
    file_one = blob(server, one)
    r = admin(base, token, "DELETE", f"/_synapse/admin/v1/media/{one.removeprefix('mxc://')}")
    assert r.json() == {"deleted_media": [media_id(one)], "total": 1}
    assert not file_one.exists() and status(carol, one) == 404
    assert (
        admin(base, token, "GET", f"/_synapse/admin/v1/media/{one.removeprefix('mxc://')}").status_code == 404
    )
    # Delete by date and size through the API (keep_profiles defaults to true).
    age(server, two, three)
    before = str(server_now(server))
    r = admin(base, token, "POST", "/_synapse/admin/v1/media/delete", before_ts=before, size_gt="1000")
    assert r.json() == {"deleted_media": [media_id(three)], "total": 1}  # the PNG is smaller than 1000 bytes
    r = admin(base, token, "DELETE", f"/_synapse/admin/v1/users/{user}/media")
    assert r.json() == {"deleted_media": [media_id(two)], "total": 1}
    assert admin(base, token, "POST", "/_synapse/admin/v1/purge_media_cache", before_ts=before).json() == {
        "deleted": 0
    }


def test_bad_input_and_non_admins_get_matrix_errors(site) -> None:
    server, base, token = site
    user = MatrixClient(server.base_url).register()
    r = admin(base, user.access_token or "", "POST", "/_synapse/admin/v1/media/delete", before_ts="1")
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = admin(base, token, "POST", "/_synapse/admin/v1/media/delete")
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
    r = admin(base, token, "POST", "/_synapse/admin/v1/media/delete", before_ts="1700000000")  # seconds
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = admin(base, token, "DELETE", "/_synapse/admin/v1/media/other.example/abc")
    assert r.status_code == 400
    r = admin(base, token, "POST", "/_synapse/admin/v1/media/protect/nope")
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    r = admin(base, token, "GET", "/_synapse/admin/v1/statistics/users/media", order_by="size")
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"


def server_now(server: LiveServer) -> int:
    """30 days ago by the database's clock (what was aged 40 days is older)."""
    [(ts,)] = server.query("SELECT (extract(epoch FROM now()) * 1000)::bigint")
    return int(ts) - 30 * DAY_MS


def test_the_media_command_quarantines_protects_deletes_and_counts(site) -> None:
    server, _, _ = site
    dave = MatrixClient(server.base_url).register()
    keep, drop = upload(dave, images.png(50, 50, (5, 6, 7))), upload(dave, images.png(50, 51, (5, 6, 8)))

    def media(*args: str) -> dict[str, Any]:
        return purge_like(server, "media", *args)

    assert media("protect", media_id(keep)) == {}
    assert media("quarantine-user", dave.user_id or "") == {"num_quarantined": 1}
    assert status(dave, keep) == 200 and status(dave, drop) == 404
    assert media("unquarantine", drop) == {"unquarantined": True} and status(dave, drop) == 200
    file_drop = blob(server, drop)
    preview = media("delete", drop, "--dry-run")
    assert (preview["local_media"], preview["files"], preview["dry_run"]) == (
        1,
        1,
        True,
    ) and file_drop.exists()
    done = media("delete", drop)
    assert (done["local_media"], done["files"]) == (1, 1) and not file_drop.exists()
    usage = media("usage", "--search", (dave.user_id or "")[1:9])
    assert usage["users"] == [
        {"user_id": dave.user_id, "displayname": usage["users"][0]["displayname"], "media_count": 1,
         "media_length": len(images.png(50, 50, (5, 6, 7)))}
    ]  # fmt: skip
    bad = server.manage("media", "quarantine", "not-an-mxc")
    assert bad.returncode == 2 and b"not mxc://" in bad.stderr


def purge_like(server: LiveServer, command: str, *args: str) -> dict[str, Any]:
    done = server.manage(command, *args, "--json")
    assert done.returncode == 0, done.stderr.decode()
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))

"""Media administration services in-process, on PostgreSQL and SQLite (the quick start):
a purge over local media and the remote cache sharing one content-addressed file, retention
sparing protected and quarantined media and avatars. Live checks through real processes are
in tests/test_media_admin.py."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from django.conf import settings

from dagcore.actions import media as media_actions
from dagcore.actions import media_admin as actions
from dagcore.actions.audit import Actor
from dagcore.media.filestore import get_file_store
from dagcore.models import LocalMedia, RemoteMedia, User
from dagcore.store import media as media_store

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]
SERVER = settings.SERVER_NAME
ADMIN = Actor(user_id=f"@root:{SERVER}", via="cli")
DAY = 86_400_000
LONG_AGO = int(time.time() * 1000) - 40 * DAY


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path: Path) -> Path:
    settings.MEDIA_STORE_PATH = tmp_path
    return tmp_path


def local(data: bytes, *, uploader: str = f"@alice:{SERVER}", old: bool = True) -> str:
    blob = get_file_store().write_bytes(data)
    meta = media_actions.UploadMetadata(content_type="text/plain", upload_name=None)
    media_id = media_actions.do_record_upload(uploader=uploader, meta=meta, blob=blob, size=None).rsplit(
        "/", 1
    )[1]
    if old:
        LocalMedia.objects.filter(media_id=media_id).update(last_access_ts=LONG_AGO)
    return media_id


def remote(data: bytes, media_id: str, *, old: bool = True) -> RemoteMedia:
    blob = get_file_store().write_bytes(data)
    row = media_store.insert_remote_media(server_name="other.example", media_id=media_id,
                                          content_type="text/plain", upload_name=None, sha256=blob.sha256,
                                          size=blob.size)  # fmt: skip
    if old:
        RemoteMedia.objects.filter(pk=row.pk).update(last_access_ts=LONG_AGO)
    return row


def test_a_purge_frees_a_file_only_once_neither_local_nor_remote_rows_use_it() -> None:
    store = get_file_store()
    shared = local(b"the same bytes")
    cached = remote(b"the same bytes", "copy1")
    recent_remote = remote(b"the same bytes", "copy2", old=False)
    alone = remote(b"only cached here", "alone")
    before = int(time.time() * 1000) - 30 * DAY

    preview = actions.do_purge_media(actor=ADMIN, before_ts=before, dry_run=True)
    done = actions.do_purge_media(actor=ADMIN, before_ts=before)
    counts = {"local_media": 1, "remote_media": 2, "files": 1, "bytes": len(b"only cached here")}
    assert {k: preview.counts()[k] for k in counts} == counts == {k: done.counts()[k] for k in counts}
    assert store.exists(cached.sha256)  # the recent remote copy still uses it
    assert not store.exists(alone.sha256)
    assert not LocalMedia.objects.filter(media_id=shared).exists()
    assert list(RemoteMedia.objects.values_list("media_id", flat=True)) == [recent_remote.media_id]

    # Remote purge alone, as Synapse's purge_media_cache: the last copy and its file go.
    RemoteMedia.objects.update(last_access_ts=LONG_AGO)
    result = actions.do_purge_remote_cache(actor=ADMIN, before_ts=before)
    assert (result.remote_media, result.files) == (1, 1) and not store.exists(cached.sha256)


def test_quarantined_remote_copies_stay_cached_so_they_are_never_fetched_again() -> None:
    row = remote(b"bad bytes", "bad")
    assert actions.do_quarantine_one(actor=ADMIN, server_name="other.example", media_id="bad") == 1
    result = actions.do_purge_remote_cache(actor=ADMIN, before_ts=int(time.time() * 1000))
    assert result.remote_media == 0 and RemoteMedia.objects.filter(pk=row.pk, quarantined=True).exists()
    # The same bytes uploaded here later are quarantined as well.
    again = local(b"bad bytes", old=False)
    assert LocalMedia.objects.get(media_id=again).quarantined


def test_retention_spares_protected_and_quarantined_media_and_avatars(settings) -> None:
    settings.DAGMA = dataclasses.replace(settings.DAGMA, media_retention={"local_media_lifetime": "30d"})
    protected, quarantined, avatar, plain = (local(b"p"), local(b"q"), local(b"a"), local(b"x"))
    actions.do_protect(actor=ADMIN, media_id=protected, protected=True)
    actions.do_quarantine_one(actor=ADMIN, server_name=SERVER, media_id=quarantined)
    User.objects.create(user_id=f"@alice:{SERVER}", localpart="alice", created_ts=1,
                        avatar_url=f"mxc://{SERVER}/{avatar}")  # fmt: skip
    assert media_actions.do_purge_media_retention() == 1
    assert set(LocalMedia.objects.values_list("media_id", flat=True)) == {protected, quarantined, avatar}
    assert plain not in set(LocalMedia.objects.values_list("media_id", flat=True))


def test_a_purge_refuses_to_delete_more_than_its_preview_showed() -> None:
    local(b"one")
    before = int(time.time() * 1000) - 30 * DAY
    preview = actions.do_purge_media(actor=ADMIN, before_ts=before, dry_run=True)
    local(b"two")
    with pytest.raises(actions.MatrixError) as exc:
        actions.do_purge_media(actor=ADMIN, before_ts=before, at_most=preview.local_media)
    assert exc.value.status == 409 and LocalMedia.objects.count() == 2


def test_a_purge_of_more_rows_than_one_query_may_name_counts_and_frees_the_same() -> None:
    store = get_file_store()
    blobs = [store.write_bytes(f"item {i}".encode()) for i in range(1100)]
    LocalMedia.objects.bulk_create(
        LocalMedia(
            media_id=f"bulk{i}",
            uploader=f"@alice:{SERVER}",
            sha256=b.sha256,
            size=b.size,
            created_ts=LONG_AGO,
            uploaded_ts=LONG_AGO,
            last_access_ts=LONG_AGO,
        )
        for i, b in enumerate(blobs)
    )
    local(b"item 0", old=False)  # a recent row shares the first file
    before = int(time.time() * 1000) - 30 * DAY
    preview = actions.do_purge_media(actor=ADMIN, before_ts=before, dry_run=True)
    done = actions.do_purge_media(actor=ADMIN, before_ts=before)
    assert (preview.local_media, preview.files) == (done.local_media, done.files) == (1100, 1099)
    assert store.exists(blobs[0].sha256) and not store.exists(blobs[1].sha256)

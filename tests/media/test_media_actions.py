"""Media actions and store against the database (in-process): freeze, quarantine, pending uploads,
pre-generated thumbnails, retention. The HTTP side is in tests/api/test_media.py."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
from django.conf import settings

from dagcore.actions import media as actions
from dagcore.http.errors import MatrixError
from dagcore.media.filestore import get_file_store
from dagcore.models import LocalMedia, MediaThumbnail
from dagcore.store import media as media_store
from dagcore.tasks.media import generate_thumbnails
from tests.media import images

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]
SERVER = settings.SERVER_NAME
ALICE = f"@alice:{SERVER}"
BOB = f"@bob:{SERVER}"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path: Path) -> Path:
    settings.MEDIA_STORE_PATH = tmp_path
    return tmp_path


@pytest.fixture
def conf(settings):
    # pytest-django's ``settings`` fixture restores DAGMA after the test.
    def set_option(name: str, value: object) -> None:
        settings.DAGMA = dataclasses.replace(settings.DAGMA, **{name: value})

    return set_option


def upload(
    data: bytes, content_type: str = "image/png", name: str | None = "f.png", uploader: str = ALICE
) -> str:
    blob = get_file_store().write_bytes(data)
    size = actions.probe_image_size(sha256=blob.sha256, content_type=content_type)
    meta = actions.UploadMetadata(content_type=content_type, upload_name=name)
    mxc = actions.do_record_upload(uploader=uploader, meta=meta, blob=blob, size=size)
    return mxc.rsplit("/", 1)[1]


def errcode(exc: pytest.ExceptionInfo[MatrixError]) -> tuple[int, str]:
    return exc.value.status, exc.value.errcode


def test_a_download_is_one_query(django_assert_max_num_queries) -> None:
    media_id = upload(images.png(40, 30))
    with django_assert_max_num_queries(1):
        content = actions.get_download(server_name=SERVER, media_id=media_id, legacy=False)
    assert content.path is not None and content.path.read_bytes() == images.png(40, 30)
    assert content.upload_name == "f.png" and content.content_type == "image/png"


def test_serving_a_stored_thumbnail_is_two_queries(django_assert_max_num_queries) -> None:
    media_id = upload(images.png(400, 300))
    generate_thumbnails.run(media_id)
    request = actions.ThumbnailRequest(width=96, height=96, method="crop", animated=False)
    with django_assert_max_num_queries(2):
        media, _source = actions.access_thumbnail_source(server_name=SERVER, media_id=media_id, legacy=False)
        stored = actions._stored_thumbnail(media, request)
    assert stored is not None and stored.path is not None and stored.content_type == "image/png"
    assert images.open_image(stored.path.read_bytes()).size == (96, 96)


@pytest.mark.parametrize(
    ("server_name", "media_id", "expected"),
    [
        ("../../etc", "abc", (400, "M_INVALID_PARAM")),
        ("a" * 5000, "abc", (400, "M_INVALID_PARAM")),
        ("ex\x00ample.com", "abc", (400, "M_INVALID_PARAM")),
        (SERVER, "../../etc/passwd", (404, "M_NOT_FOUND")),
        (SERVER, "a" * 5000, (404, "M_NOT_FOUND")),
        (SERVER, "abc\x00", (404, "M_NOT_FOUND")),
        (SERVER, "a/b", (404, "M_NOT_FOUND")),
        (SERVER, "unknownmediaid", (404, "M_NOT_FOUND")),
        ("other.example.org", "abc", (404, "M_NOT_FOUND")),
    ],
)
def test_bad_or_unknown_names_are_refused_before_any_lookup(server_name, media_id, expected) -> None:
    with pytest.raises(MatrixError) as exc:
        actions.get_download(server_name=server_name, media_id=media_id, legacy=False)
    assert errcode(exc) == expected


def test_media_uploaded_under_authenticated_media_is_not_served_on_legacy_paths(conf) -> None:
    frozen = upload(b"after the freeze", "text/plain")
    with pytest.raises(MatrixError) as exc:
        actions.get_download(server_name=SERVER, media_id=frozen, legacy=True)
    assert errcode(exc) == (404, "M_NOT_FOUND")
    assert actions.get_download(server_name=SERVER, media_id=frozen, legacy=False).size == 16
    conf("enable_authenticated_media", False)
    open_media = upload(b"before the freeze", "text/plain")
    assert actions.get_download(server_name=SERVER, media_id=open_media, legacy=True).size == 17


def test_quarantined_media_is_never_served_nor_its_bytes_uploaded_again() -> None:
    media_id = upload(images.png(50, 50))
    other = upload(images.png(60, 60))
    assert (
        media_store.quarantine_media(server_name=SERVER, media_id=media_id, quarantined_by="@admin:x") is True
    )
    for legacy in (False, True):
        with pytest.raises(MatrixError) as exc:
            actions.get_download(server_name=SERVER, media_id=media_id, legacy=legacy)
        assert errcode(exc) == (404, "M_NOT_FOUND")
    with pytest.raises(MatrixError):
        actions.access_thumbnail_source(server_name=SERVER, media_id=media_id, legacy=False)
    again = upload(images.png(50, 50), uploader=BOB)
    with pytest.raises(MatrixError):
        actions.get_download(server_name=SERVER, media_id=again, legacy=False)
    # Control: other media is served; unquarantined media is served again.
    actions.get_download(server_name=SERVER, media_id=other, legacy=False)
    assert media_store.unquarantine_media(server_name=SERVER, media_id=media_id) is True
    actions.get_download(server_name=SERVER, media_id=media_id, legacy=False)
    assert media_store.quarantine_media(server_name="remote.example", media_id=media_id) is False
    assert media_store.quarantine_media(server_name=SERVER, media_id="nosuchmedia") is False


def test_a_pending_upload_is_for_its_creator_once_and_until_it_expires() -> None:
    created = actions.do_create_pending_media(uploader=ALICE)
    media_id = created["content_uri"].rsplit("/", 1)[1]
    assert created["unused_expires_at"] > int(time.time() * 1000)
    with pytest.raises(MatrixError) as exc:
        actions.get_download(server_name=SERVER, media_id=media_id, legacy=False)
    assert errcode(exc) == (504, "M_NOT_YET_UPLOADED")
    with pytest.raises(MatrixError) as exc:
        actions.access_pending_media(server_name=SERVER, media_id=media_id, uploader=BOB)
    assert errcode(exc) == (403, "M_FORBIDDEN")
    media = actions.access_pending_media(server_name=SERVER, media_id=media_id, uploader=ALICE)
    blob = get_file_store().write_bytes(b"late content")
    meta = actions.UploadMetadata(content_type="text/plain", upload_name="late.txt")
    actions.do_complete_pending_media(media=media, meta=meta, blob=blob, size=None)
    with pytest.raises(MatrixError) as exc:
        actions.do_complete_pending_media(media=media, meta=meta, blob=blob, size=None)
    assert errcode(exc) == (409, "M_CANNOT_OVERWRITE_MEDIA")
    with pytest.raises(MatrixError) as exc:
        actions.access_pending_media(server_name=SERVER, media_id=media_id, uploader=ALICE)
    assert errcode(exc) == (409, "M_CANNOT_OVERWRITE_MEDIA")
    assert actions.get_download(server_name=SERVER, media_id=media_id, legacy=False).upload_name == "late.txt"

    expired = actions.do_create_pending_media(uploader=ALICE)["content_uri"].rsplit("/", 1)[1]
    LocalMedia.objects.filter(media_id=expired).update(unused_expires_ts=1)
    with pytest.raises(MatrixError) as exc:
        actions.access_pending_media(server_name=SERVER, media_id=expired, uploader=ALICE)
    assert errcode(exc) == (404, "M_NOT_FOUND")


def test_pending_uploads_per_user_are_limited() -> None:
    for _ in range(actions.MAX_PENDING_UPLOADS):
        actions.do_create_pending_media(uploader=ALICE)
    with pytest.raises(MatrixError) as exc:
        actions.do_create_pending_media(uploader=ALICE)
    assert errcode(exc) == (429, "M_LIMIT_EXCEEDED")
    actions.do_create_pending_media(uploader=BOB)  # control: another user is not affected


def test_the_media_task_pre_generates_the_standard_sizes_once() -> None:
    media_id = upload(images.jpeg(1600, 1200))
    assert generate_thumbnails.run(media_id) == 5
    rows = {
        (t.target_width, t.target_height, t.method): (t.width, t.height) for t in MediaThumbnail.objects.all()
    }
    assert rows == {
        (32, 32, "crop"): (32, 32),
        (96, 96, "crop"): (96, 96),
        (320, 240, "scale"): (320, 240),
        (640, 480, "scale"): (640, 480),
        (800, 600, "scale"): (800, 600),
    }
    assert generate_thumbnails.run(media_id) == 0  # idempotent
    assert generate_thumbnails.run(upload(b"%PDF-1.4", "application/pdf")) == 0
    assert generate_thumbnails.run("nosuchmedia") == 0


def test_an_image_upload_queues_its_thumbnails_other_uploads_do_not(
    settings,
    monkeypatch,
    django_capture_on_commit_callbacks,
) -> None:
    from dagcore.taskqueue import runner

    settings.CELERY_BROKER_URL = None  # no broker: the in-process runner
    # Run the task right here (the runner's own thread would close the test's connection).
    monkeypatch.setattr(runner, "submit", lambda func, *args, **kwargs: func(*args, **kwargs))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        media_id = upload(images.png(900, 700))
    assert len(callbacks) == 1
    assert MediaThumbnail.objects.filter(media__media_id=media_id).count() == 5
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        upload(b"hello", "text/plain")
        upload(images.png_bomb(8000, 8000))  # too many pixels: nothing to pre-generate
    assert callbacks == []


def test_without_dynamic_thumbnails_the_closest_standard_size_is_served(conf) -> None:
    conf("dynamic_thumbnails", False)
    pick = actions.choose_standard_size
    req = actions.ThumbnailRequest
    assert pick(req(width=50, height=50, method="crop", animated=False)).width == 96
    assert pick(req(width=300, height=200, method="scale", animated=False)).width == 320
    assert pick(req(width=1500, height=1500, method="scale", animated=False)).width == 800


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"width": None, "height": "10"}, "M_MISSING_PARAM"),
        ({"width": "-1", "height": "10"}, "M_INVALID_PARAM"),
        ({"width": "0", "height": "10"}, "M_INVALID_PARAM"),
        ({"width": "1.5", "height": "10"}, "M_INVALID_PARAM"),
        ({"width": "10", "height": "10", "method": "stretch"}, "M_INVALID_PARAM"),
        ({"width": "10", "height": "10", "animated": "yes"}, "M_INVALID_PARAM"),
    ],
)
def test_thumbnail_parameters_are_checked(params, expected) -> None:
    kwargs = {"method": None, "animated": None, **params}
    with pytest.raises(MatrixError) as exc:
        actions.check_thumbnail_request(**kwargs)
    assert exc.value.errcode == expected
    ok = actions.check_thumbnail_request(width="9000", height="3000", method="crop", animated="true")
    assert (ok.width, ok.height, ok.method, ok.animated) == (2000, 667, "crop", True)


def test_retention_purges_media_nobody_fetched_and_keeps_shared_or_recent_bytes(conf) -> None:
    conf("media_retention", {"local_media_lifetime": "30d"})
    store = get_file_store()
    old_unique = upload(b"old and alone", "text/plain")
    old_shared = upload(b"shared bytes", "text/plain")
    fresh_shared = upload(b"shared bytes", "text/plain")
    fresh = upload(b"recently fetched", "text/plain")
    long_ago = int(time.time() * 1000) - 31 * 86_400_000
    LocalMedia.objects.filter(media_id__in=[old_unique, old_shared]).update(last_access_ts=long_ago)
    hashes = {m.media_id: str(m.sha256) for m in LocalMedia.objects.all()}
    for sha in set(hashes.values()):
        os.utime(store.blob_path(sha), (time.time() - 7200, time.time() - 7200))
    LocalMedia.objects.create(
        media_id="pendingexpired", uploader=ALICE, created_ts=1, last_access_ts=1, unused_expires_ts=1
    )

    assert actions.do_purge_media_retention() == 3
    remaining = set(LocalMedia.objects.values_list("media_id", flat=True))
    assert remaining == {fresh_shared, fresh}
    assert not store.exists(hashes[old_unique])
    assert store.exists(hashes[old_shared])  # still used by fresh_shared


def test_without_a_lifetime_retention_keeps_everything(conf) -> None:
    media_id = upload(b"forever", "text/plain")
    LocalMedia.objects.filter(media_id=media_id).update(last_access_ts=1)
    assert actions.do_purge_media_retention() == 0
    assert LocalMedia.objects.filter(media_id=media_id).exists()


def test_durations_read_like_synapse_ones() -> None:
    assert actions.parse_duration_ms("90d") == 90 * 86_400_000
    assert actions.parse_duration_ms("12h") == 12 * 3_600_000
    assert actions.parse_duration_ms(5000) == 5000
    assert actions.parse_duration_ms(None) is None
    with pytest.raises(ValueError):
        actions.parse_duration_ms("forever")

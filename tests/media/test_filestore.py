"""The content-addressed file store: dedupe, atomic writes, size cap, names never from input."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from dagcore.media.filestore import MediaFileStore, TooLarge


def blobs(root: Path) -> list[Path]:
    return [p for p in (root / "content").rglob("*") if p.is_file()]


def test_identical_content_is_stored_once_under_its_sha256(tmp_path: Path) -> None:
    store = MediaFileStore(tmp_path)
    a = store.write_bytes(b"hello media")
    b = store.write_bytes(b"hello media")
    c = store.write_bytes(b"other bytes")
    assert a == b and a.sha256 == hashlib.sha256(b"hello media").hexdigest() and a.size == 11
    assert c.sha256 != a.sha256
    assert sorted(p.name for p in blobs(tmp_path)) == sorted([a.sha256, c.sha256])
    assert store.read_bytes(a.sha256) == b"hello media"
    assert list((tmp_path / "tmp").iterdir()) == []  # no temp file left behind


def test_content_over_the_limit_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    store = MediaFileStore(tmp_path)
    chunks = iter([b"x" * 600, b"y" * 600, b"never read"])
    read_calls = []

    def read(n: int) -> bytes:
        read_calls.append(n)
        return next(chunks, b"")

    with pytest.raises(TooLarge):
        store.write_stream(read, max_size=1000)
    assert len(read_calls) == 2  # stopped as soon as the cap was passed
    assert blobs(tmp_path) == [] and list((tmp_path / "tmp").iterdir()) == []
    # Control: exactly at the limit is fine.
    assert store.write_bytes(b"z" * 1000).size == 1000


@pytest.mark.parametrize("name", ["../../etc/passwd", "g" * 64, "A" * 64, "", "0" * 63, "0" * 64 + "/x"])
def test_only_hex_digests_name_files(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        MediaFileStore(tmp_path).blob_path(name)


def test_a_recently_written_blob_is_not_deleted_an_old_one_is(tmp_path: Path) -> None:
    store = MediaFileStore(tmp_path)
    blob = store.write_bytes(b"fresh")
    assert store.delete_if_stale(blob.sha256) is False and store.exists(blob.sha256)
    old = time.time() - 7200
    os.utime(store.blob_path(blob.sha256), (old, old))
    assert store.delete_if_stale(blob.sha256) is True and not store.exists(blob.sha256)


def test_rewriting_existing_content_refreshes_its_mtime(tmp_path: Path) -> None:
    store = MediaFileStore(tmp_path)
    blob = store.write_bytes(b"again")
    old = time.time() - 7200
    os.utime(store.blob_path(blob.sha256), (old, old))
    store.write_bytes(b"again")
    assert store.delete_if_stale(blob.sha256) is False

"""The content-addressed file store: media bytes on disk, named by their SHA-256.

Layout under ``MEDIA_STORE_PATH``::

    content/ab/cd/abcd...   one file per distinct content (uploads and thumbnails)
    tmp/                    uploads being written

A file's path comes only from a 64-hex-digit digest that *we* computed, never
from a media ID, file name or server name, so no request can name a path.
Writes go to ``tmp/`` and are renamed into place atomically (same filesystem),
so a reader never sees a partial file and a crash leaves only a temp file.
Identical content is stored once: the second writer finds the file and drops
its copy (dedupe), refreshing the file's mtime.

Deleting: a blob may be removed only when no row references it *and* its
mtime is older than a grace period. A concurrent upload of the same bytes
refreshes the mtime before it inserts its row, so a purge racing it leaves
the file alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

CHUNK_SIZE = 256 * 1024
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
#: A blob younger than this is never deleted (see the module docstring).
DELETE_GRACE_SECONDS = 3600.0


class TooLarge(Exception):
    """The content is larger than allowed; nothing was stored."""


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int


class MediaFileStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.content_dir = self.root / "content"
        self.tmp_dir = self.root / "tmp"

    # -- naming --------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        if not _HEX_DIGEST.fullmatch(sha256):
            # Digests come from our own rows; anything else is a bug, not input.
            raise ValueError("not a hex SHA-256 digest")
        return self.content_dir / sha256[:2] / sha256[2:4] / sha256

    # -- writing -------------------------------------------------------------------

    def write_stream(self, read: Callable[[int], bytes], *, max_size: int) -> StoredBlob:
        """Store what ``read(n)`` yields until it returns ``b""``.

        Raises :class:`TooLarge` as soon as more than ``max_size`` bytes arrive
        (the rest is never read) and leaves nothing behind.
        """
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp_dir, prefix="upload-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = read(CHUNK_SIZE)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_size:
                        raise TooLarge(f"content is larger than {max_size} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            return self._commit(tmp, digest.hexdigest(), size)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def write_bytes(self, data: bytes) -> StoredBlob:
        view = memoryview(data)
        pos = 0

        def read(n: int) -> bytes:
            nonlocal pos
            chunk = bytes(view[pos : pos + n])
            pos += len(chunk)
            return chunk

        return self.write_stream(read, max_size=len(data))

    def write_file(self, src: BinaryIO, *, max_size: int) -> StoredBlob:
        return self.write_stream(src.read, max_size=max_size)

    def _commit(self, tmp: Path, sha256: str, size: int) -> StoredBlob:
        target = self.blob_path(sha256)
        if target.exists():
            # Dedupe: the same bytes are already stored. Refresh the mtime so a
            # concurrent purge (grace period) cannot delete it under our new row.
            tmp.unlink(missing_ok=True)
            os.utime(target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        return StoredBlob(sha256=sha256, size=size)

    # -- reading -------------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        return open(self.blob_path(sha256), "rb")  # the caller closes it

    def read_bytes(self, sha256: str) -> bytes:
        return self.blob_path(sha256).read_bytes()

    def iter_chunks(self, sha256: str) -> Iterator[bytes]:
        with self.open(sha256) as f:
            while chunk := f.read(CHUNK_SIZE):
                yield chunk

    # -- deleting ------------------------------------------------------------------

    def delete_if_stale(self, sha256: str, *, grace_seconds: float = DELETE_GRACE_SECONDS) -> bool:
        """Delete an unreferenced blob unless it was written or re-uploaded recently."""
        path = self.blob_path(sha256)
        try:
            if time.time() - path.stat().st_mtime < grace_seconds:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def delete_unless_touched_since(self, sha256: str, *, since: float) -> int | None:
        """Delete an unreferenced blob for an admin's purge; bytes freed, or None if absent or
        written since ``since`` (epoch seconds: when the purge began). A concurrent upload of
        the same bytes refreshes the mtime before inserting its row, so it keeps its file;
        older blobs go at once, not after the retention job's grace period."""
        path = self.blob_path(sha256)
        try:
            st = path.stat()
            if st.st_mtime >= since:
                return None
            path.unlink()
        except FileNotFoundError:
            return None
        return int(st.st_size)

    def delete_stale_temp_files(self, *, older_than_seconds: float = 86400.0) -> int:
        """Temp files of uploads that crashed half-way."""
        removed = 0
        if not self.tmp_dir.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        for entry in self.tmp_dir.iterdir():
            try:
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def get_file_store() -> MediaFileStore:
    """The store at ``settings.MEDIA_STORE_PATH`` (read on each call, so tests can point it elsewhere)."""
    return MediaFileStore(Path(settings.MEDIA_STORE_PATH))

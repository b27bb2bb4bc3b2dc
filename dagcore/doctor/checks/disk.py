"""Disk: database and media size, free space where the database, media and logs live."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from django.conf import settings

from dagcore.doctor import FAIL, OK, WARN, Verdict, worst
from dagcore.store import health as store

WARN_PERCENT = 80.0
FAIL_PERCENT = 90.0
#: Where logs usually land (stdout goes to the journal, or a file the service manager writes).
LOG_DIRECTORIES = ("/var/log",)


class Usage(NamedTuple):
    total: int
    used: int
    free: int


UsageFn = Callable[[str], Usage]


def _disk_usage(path: str) -> Usage:
    u = shutil.disk_usage(path)
    return Usage(u.total, u.used, u.free)


def _existing(path: Path) -> Path | None:
    """``path`` or its nearest existing parent (a media store not created yet lives on its parent's disk)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def _dir_size(path: Path, *, limit_files: int = 500_000) -> tuple[int, bool]:
    """Bytes of the files under ``path``, and whether all were counted (a huge store is
    sampled up to ``limit_files`` files: the check must stay quick)."""
    total = 0
    seen = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            seen += 1
            if seen > limit_files:
                return total, False
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total, True


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_disk(*, usage: UsageFn = _disk_usage) -> Verdict:
    """WARN at :data:`WARN_PERCENT` used, FAIL at :data:`FAIL_PERCENT`, per file system."""
    places: dict[str, Path] = {}
    sqlite = store.sqlite_path()
    if sqlite is not None:
        places["database"] = sqlite.parent
    else:
        data_dir = store.postgres_data_directory()
        if data_dir is not None:
            places["database"] = data_dir
    places["media"] = Path(settings.MEDIA_STORE_PATH)
    for log_dir in LOG_DIRECTORIES:
        places["logs"] = Path(log_dir)
    details: dict[str, object] = {"database_bytes": store.database_size_bytes()}
    media = Path(settings.MEDIA_STORE_PATH)
    media_bytes, complete = _dir_size(media) if media.exists() else (0, True)
    details["media_bytes"] = media_bytes
    details["media_bytes_complete"] = complete
    statuses: list[str] = []
    lines: list[str] = []
    filesystems: dict[str, dict[str, object]] = {}
    for what, path in places.items():
        existing = _existing(path)
        if existing is None:
            continue
        try:
            u = usage(str(existing))
        except OSError:
            continue
        percent = 100.0 * u.used / u.total if u.total else 0.0
        status = FAIL if percent >= FAIL_PERCENT else WARN if percent >= WARN_PERCENT else OK
        statuses.append(status)
        filesystems[what] = {"path": str(path), "percent_used": round(percent, 1), "free_bytes": u.free}
        if status != OK:
            lines.append(f"{what} ({existing}) {percent:.0f}% used, {_gib(u.free)} free")
    details["filesystems"] = filesystems
    status = worst(statuses)
    size = f"database {_gib(int(details['database_bytes']))}, media {_gib(int(details['media_bytes']))}"  # type: ignore[call-overload]
    if status == OK:
        return Verdict("disk", OK, f"{size}; every disk under {WARN_PERCENT:.0f}% used", details=details)
    return Verdict(
        "disk", status, "; ".join(lines) + f" ({size})",
        fix="free space or grow the disk (media_retention in dagma.yaml bounds the media store)",
        details=details,
    )  # fmt: skip

"""The server at a glance, for Politburo's dashboard: processes, storage, queues, versions,
certificates and keys, the last checks and scheduled-job runs.

Each figure is gathered on its own: one that fails (Redis down, a certificate unreadable)
shows as an error in its place instead of taking the page down.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from dagcore import __version__
from dagcore.actions.heartbeat import ProcessStatus, list_processes
from dagcore.clock import now_ms
from dagcore.models import CheckResult, ScheduledJobRun
from dagcore.store import operations as ops_store
from dagcore.store import status as status_store
from dagcore.taskqueue.schedule import BEAT_SCHEDULE

logger = logging.getLogger("dagma.status")

#: Celery queues (``CELERY_TASK_ROUTES``), whose depth is the length of their Redis list.
QUEUES = ("celery", "federation", "media", "push", "maintenance")
#: Media folders larger than this many files are not walked on every page view.
MEDIA_WALK_LIMIT = 20_000


@dataclass
class Figure:
    """One value, or why it could not be had."""

    value: Any = None
    error: str = ""


@dataclass
class ServerStatus:
    server_name: str
    now_ts: int
    processes: list[ProcessStatus]
    database: Figure
    redis: Figure
    pending_migrations: Figure
    versions: dict[str, Figure]
    queues: Figure
    federation_outbox: Figure
    push: Figure
    disk: Figure
    tls_certificate: Figure
    signing_key: Figure
    extremities: Figure
    checks: list[CheckResult] = field(default_factory=list)
    jobs: list[tuple[str, str, float, ScheduledJobRun | None]] = field(default_factory=list)


def _figure(fn: Callable[[], Any]) -> Figure:
    try:
        return Figure(fn())
    except Exception as exc:  # a dashboard shows what it can
        logger.warning("dashboard figure failed: %s", exc, exc_info=True)
        return Figure(None, f"{type(exc).__name__}: {exc}")


def _redis() -> Any:
    import redis

    return redis.Redis.from_url(str(settings.REDIS_URL), socket_timeout=2, socket_connect_timeout=2)


def _redis_info() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"configured": False}
    info = _redis().info("server")
    return {"configured": True, "ok": True, "version": info.get("redis_version")}


def _queue_depths() -> dict[str, int] | None:
    if not settings.CELERY_BROKER_URL:
        return None  # tasks run in-process (the embedded default): nothing queues
    client = _redis()
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    return {q: int(client.llen(prefix + q)) for q in QUEUES}


def _dir_size(path: Path) -> tuple[int, int, bool]:
    """Bytes and files under ``path`` (stops counting past MEDIA_WALK_LIMIT files: partial)."""
    total = files = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
            files += 1
            if files >= MEDIA_WALK_LIMIT:
                return total, files, True
    return total, files, False


def _disk() -> dict[str, Any]:
    media = Path(settings.MEDIA_STORE_PATH)
    db_size = status_store.database_size_bytes()
    if db_size is None:
        db_file = Path(str(settings.DATABASES["default"]["NAME"]))
        db_size = sum(p.stat().st_size for p in db_file.parent.glob(db_file.name + "*") if p.is_file())
    media_bytes, media_files, partial = _dir_size(media) if media.exists() else (0, 0, False)
    usage = shutil.disk_usage(media if media.exists() else settings.DAGMA.config_dir)
    return {
        "database_bytes": db_size,
        "media_bytes": media_bytes,
        "media_files": media_files,
        "media_partial": partial,
        "free_bytes": usage.free,
        "total_bytes": usage.total,
    }


def _tls_certificate() -> dict[str, Any] | None:
    path = settings.DAGMA.tls_certificate_path
    if not path:
        return None
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(settings.DAGMA.resolve_path(path).read_bytes())
    expires = int(cert.not_valid_after_utc.timestamp() * 1000)
    return {"path": str(path), "subject": cert.subject.rfc4514_string(), "expires_ts": expires,
            "expires_in_ms": expires - now_ms()}  # fmt: skip


def _signing_key() -> dict[str, Any]:
    path = settings.DAGMA.resolve_path(settings.DAGMA.signing_key_path)
    from dagcore.server_keys import get_signing_key

    key = get_signing_key()
    created = int(path.stat().st_mtime * 1000)
    return {"key_id": f"{key.alg}:{key.version}", "file_ts": created, "age_ms": now_ms() - created}


def _versions() -> dict[str, Figure]:
    return {
        "Dagma": Figure(__version__),
        "Python": Figure(platform.python_version()),
        "Database": _figure(status_store.database_vendor_version),
        "Redis": _figure(lambda: _redis_info().get("version") or "not configured"),
    }


def get_server_status() -> ServerStatus:
    runs = ops_store.list_job_runs()
    return ServerStatus(
        server_name=settings.SERVER_NAME,
        now_ts=now_ms(),
        processes=list_processes(),
        database=_figure(status_store.database_ok),
        redis=_figure(_redis_info),
        pending_migrations=_figure(status_store.pending_migrations),
        versions=_versions(),
        queues=_figure(_queue_depths),
        federation_outbox=_figure(status_store.federation_outbox_counts),
        push=_figure(status_store.push_counts),
        disk=_figure(_disk),
        tls_certificate=_figure(_tls_certificate),
        signing_key=_figure(_signing_key),
        extremities=_figure(status_store.rooms_with_most_extremities),
        checks=ops_store.latest_check_results(),
        jobs=[(name, task, every, runs.get(name)) for name, (task, every) in BEAT_SCHEDULE.items()],
    )

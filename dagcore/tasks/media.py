"""Media tasks (Celery queue ``media``): thin and idempotent, they reload from the DB."""

from __future__ import annotations

from celery import shared_task

from dagcore.actions.media import do_generate_standard_thumbnails, do_purge_media_retention
from dagcore.actions.remote_media import do_purge_remote_media
from dagcore.clock import now_ms


@shared_task(name="dagcore.tasks.media.generate_thumbnails")
def generate_thumbnails(media_id: str) -> int:
    """The spec's standard thumbnail sizes of a new upload (also made on demand if this is late)."""
    return do_generate_standard_thumbnails(media_id=media_id)


@shared_task(name="dagcore.tasks.media.purge_media_retention")
def purge_media_retention() -> int:
    """Beat: ``media_retention`` purges (local and cached remote media), expired pending uploads,
    preview cache, temp files."""
    return do_purge_media_retention() + do_purge_remote_media(now=now_ms())

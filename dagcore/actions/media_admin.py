"""Media administration: purges, quarantine, protection, deletion and usage. ``manage.py
purge_media``, Synapse's media admin API and Politburo's Media page all call these.

Synapse's rules (docs/admin_api/media_admin_api.md): a purge by date/size spares quarantined
media (kept as evidence, so the same bytes stay blocked) and protected media
(``safe_from_quarantine``), and with ``keep_profiles`` every avatar; quarantining in bulk (a
room's, a user's) spares protected media. The file store is content-addressed: a file goes only
when no media or thumbnail row uses its bytes any more, so counts of freed files and bytes come
from the same computation in the dry run and in the purge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from dagcore.actions import admin_users
from dagcore.actions.audit import Actor, record_audit
from dagcore.http.errors import MatrixError
from dagcore.media.filestore import get_file_store
from dagcore.media.ids import is_valid_media_id
from dagcore.models import LocalMedia, RemoteMedia
from dagcore.protocol.identifiers import is_valid_server_name
from dagcore.server_keys import get_server_name
from dagcore.store import media as media_store
from dagcore.store import media_admin as store

#: Rows deleted per transaction in a purge.
BATCH = 500


@dataclass
class PurgeResult:
    """What a purge removed (or, ``dry_run``, would remove): rows, then files and bytes freed."""

    dry_run: bool
    local_media: int = 0
    remote_media: int = 0
    files: int = 0
    bytes: int = 0
    deleted_media: list[str] = field(default_factory=list)
    kept_avatars: int = 0

    def counts(self) -> dict[str, int]:
        return {"local_media": self.local_media, "remote_media": self.remote_media, "files": self.files,
                "bytes": self.bytes, "kept_avatars": self.kept_avatars}  # fmt: skip


def _delete_rows(*, local_pks: list[int], remote_pks: list[int], dry_run: bool, result: PurgeResult) -> None:
    """Delete exactly these rows and the files only they used (batches), or count them."""
    freed = store.blobs_freed_by(local_pks=local_pks, remote_pks=remote_pks)
    file_store = get_file_store()
    if dry_run:
        present = {h: s for h, s in freed.items() if file_store.exists(h)}
        result.files += len(present)
        result.bytes += sum(present.values())
        return
    started = time.time()
    for i in range(0, len(local_pks), BATCH):
        media_store.delete_local_media(local_pks[i : i + BATCH])
    for i in range(0, len(remote_pks), BATCH):
        media_store.delete_remote_media(remote_pks[i : i + BATCH])
    # Re-checked after the rows went: a row added meanwhile with the same bytes keeps the file.
    hashes = sorted(freed)
    for i in range(0, len(hashes), 1000):
        for sha256 in media_store.unreferenced_hashes(set(hashes[i : i + 1000])):
            size = file_store.delete_unless_touched_since(sha256, since=started)
            if size is not None:
                result.files += 1
                result.bytes += size


def do_purge_media(
    *,
    actor: Actor,
    before_ts: int,
    size_gt: int = 0,
    local: bool = True,
    remote: bool = True,
    keep_profiles: bool = True,
    dry_run: bool = False,
    at_most: int | None = None,
) -> PurgeResult:
    """Media last accessed before ``before_ts`` and larger than ``size_gt`` bytes: local media
    (minus quarantined, protected and, with ``keep_profiles``, avatars) and/or cached remote media
    (minus quarantined). The dry run counts the same selection. ``at_most``: the item count a
    preview showed; a selection that grew since is refused (nothing is deleted)."""
    if before_ts <= 0 or size_gt < 0:
        raise MatrixError(400, "M_INVALID_PARAM", "before_ts must be positive and size_gt not negative")
    if before_ts < 30_000_000_000:
        # As Synapse: a value this small is almost surely seconds, not milliseconds.
        raise MatrixError(400, "M_INVALID_PARAM", "before_ts must be a timestamp in milliseconds")
    result = PurgeResult(dry_run=dry_run)
    local_rows: list[store.Candidate] = []
    if local:
        avatars = store.avatar_media_ids(server_name=get_server_name()) if keep_profiles else set()
        everything = store.select_local_purge(before_ts=before_ts, size_gt=size_gt, exclude_media_ids=set())
        local_rows = [c for c in everything if c.media_id not in avatars]
        result.kept_avatars = len(everything) - len(local_rows)
    remote_rows = store.select_remote_purge(before_ts=before_ts, size_gt=size_gt) if remote else []
    result.local_media, result.remote_media = len(local_rows), len(remote_rows)
    if at_most is not None and len(local_rows) + len(remote_rows) > at_most:
        raise MatrixError(
            409,
            "M_UNKNOWN",
            f"{len(local_rows) + len(remote_rows)} items match now, {at_most} did in the preview: "
            "preview again (nothing was deleted)",
        )
    result.deleted_media = [c.media_id for c in local_rows]
    _delete_rows(
        local_pks=[c.pk for c in local_rows],
        remote_pks=[c.pk for c in remote_rows],
        dry_run=dry_run,
        result=result,
    )
    record_audit(
        actor=actor,
        action="media.purge",
        target="local+remote" if local and remote else ("local" if local else "remote"),
        params={"before_ts": before_ts, "size_gt": size_gt, "keep_profiles": keep_profiles},
        counts=result.counts(),
        result="dry-run" if dry_run else "ok",
    )
    return result


def do_purge_remote_cache(*, actor: Actor, before_ts: int, dry_run: bool = False) -> PurgeResult:
    """``POST /_synapse/admin/v1/purge_media_cache``: cached remote media not read since ``before_ts``."""
    return do_purge_media(actor=actor, before_ts=before_ts, local=False, remote=True, dry_run=dry_run)


# --------------------------------------------------------------------------- one item


def check_location(*, server_name: str, media_id: str) -> None:
    if not is_valid_server_name(server_name):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid server name")
    if not is_valid_media_id(media_id):
        raise MatrixError(404, "M_NOT_FOUND", "Unknown media")


def media_info(*, server_name: str, media_id: str) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/media/{origin}/{mediaId}``: ``media_info`` of local or cached remote media."""
    check_location(server_name=server_name, media_id=media_id)
    if server_name == get_server_name():
        row = media_store.get_local_media(media_id)
        if row is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown media")
        return {"media_info": local_media_json(row) | {"media_origin": server_name}}
    remote = store.get_remote_media_row(server_name=server_name, media_id=media_id)
    if remote is None:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown media (remote media is listed only once cached)")
    return {"media_info": remote_media_json(remote)}


def local_media_json(row: LocalMedia) -> dict[str, Any]:
    return {
        "media_origin": get_server_name(),
        "user_id": row.uploader,
        "media_id": row.media_id,
        "media_type": row.content_type,
        "media_length": row.size,
        "upload_name": row.upload_name,
        "created_ts": row.created_ts,
        "filesystem_id": row.sha256,
        "url_cache": None,
        "last_access_ts": row.last_access_ts,
        "quarantined_by": row.quarantined_by if row.quarantined else None,
        "authenticated": row.authenticated,
        "safe_from_quarantine": row.safe_from_quarantine,
        "sha256": row.sha256,
    }


def remote_media_json(row: RemoteMedia) -> dict[str, Any]:
    return {
        "media_origin": row.server_name,
        "user_id": None,
        "media_id": row.media_id,
        "media_type": row.content_type,
        "media_length": row.size,
        "upload_name": row.upload_name,
        "created_ts": row.created_ts,
        "filesystem_id": row.sha256,
        "url_cache": None,
        "last_access_ts": row.last_access_ts,
        "quarantined_by": row.quarantined_by if row.quarantined else None,
        "authenticated": True,
        "safe_from_quarantine": None,
        "sha256": row.sha256,
    }


def do_delete_local_media(*, actor: Actor, media_ids: list[str], dry_run: bool = False) -> PurgeResult:
    """Delete these local media (rows, thumbnails, and files no other row uses). Unknown IDs are
    skipped; a deliberate deletion removes protected and quarantined media too."""
    pks = store.local_pks_of(media_ids)
    rows = store.local_candidates(pks)
    result = PurgeResult(
        dry_run=dry_run, local_media=len(pks), deleted_media=sorted(c.media_id for c in rows)
    )
    _delete_rows(local_pks=pks, remote_pks=[], dry_run=dry_run, result=result)
    record_audit(actor=actor, action="media.delete", target=",".join(media_ids[:20]),
                 params={"media_ids": len(media_ids)}, counts=result.counts(),
                 result="dry-run" if dry_run else "ok")  # fmt: skip
    return result


def check_delete_one(*, actor: Actor, server_name: str, media_id: str) -> PurgeResult:
    """``DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`` (local media only, as Synapse)."""
    check_location(server_name=server_name, media_id=media_id)
    if server_name != get_server_name():
        raise MatrixError(400, "M_INVALID_PARAM", "Can only delete local media")
    if media_store.get_local_media(media_id) is None:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown media")
    return do_delete_local_media(actor=actor, media_ids=[media_id])


# --------------------------------------------------------------------------- quarantine, protection


def do_quarantine_one(*, actor: Actor, server_name: str, media_id: str) -> int:
    """Quarantine one item (and other copies of its bytes). Protected media is left alone (as
    Synapse). Returns how many rows were quarantined."""
    check_location(server_name=server_name, media_id=media_id)
    if server_name == get_server_name():
        n = store.quarantine_local(media_ids=[media_id], by=actor.user_id)
    else:
        n = store.quarantine_remote(keys=[(server_name, media_id)], by=actor.user_id)
    record_audit(actor=actor, action="media.quarantine", target=f"mxc://{server_name}/{media_id}",
                 counts={"quarantined": n})  # fmt: skip
    return n


def media_of_event_content(content: Any) -> list[tuple[str, str]]:
    """``(server_name, media_id)`` of every ``mxc://`` URI an event's content names: the file
    (``url``, or ``file.url`` when encrypted) and its thumbnail (``info.thumbnail_url`` /
    ``info.thumbnail_file.url``), as the spec's m.image/m.file/m.video/m.audio/m.sticker put them."""
    if not isinstance(content, dict):
        return []

    def field(container: Any, key: str) -> Any:
        return container.get(key) if isinstance(container, dict) else None

    info = field(content, "info")
    candidates = [
        field(content, "url"),
        field(field(content, "file"), "url"),
        field(info, "thumbnail_url"),
        field(field(info, "thumbnail_file"), "url"),
    ]
    found: list[tuple[str, str]] = []
    for uri in candidates:
        if isinstance(uri, str) and uri.startswith("mxc://"):
            server_name, _, media_id = uri.removeprefix("mxc://").partition("/")
            if server_name and media_id and "/" not in media_id and (server_name, media_id) not in found:
                found.append((server_name, media_id))
    return found


def do_quarantine_event_media(*, actor: Actor, content: Any) -> int:
    """Quarantine the media a reported event shows (the reports page's action); returns how
    many rows were quarantined. Media this server never stored is skipped."""
    quarantined = 0
    for server_name, media_id in media_of_event_content(content):
        try:
            quarantined += do_quarantine_one(actor=actor, server_name=server_name, media_id=media_id)
        except MatrixError as exc:
            if exc.status != 404:
                raise
    return quarantined


def do_unquarantine_one(*, actor: Actor, server_name: str, media_id: str) -> bool:
    check_location(server_name=server_name, media_id=media_id)
    done = media_store.unquarantine_media(server_name=server_name, media_id=media_id)
    record_audit(actor=actor, action="media.unquarantine", target=f"mxc://{server_name}/{media_id}",
                 counts={"unquarantined": int(done)})  # fmt: skip
    return done


def do_quarantine_room_media(*, actor: Actor, room_id: str) -> int:
    """Every local and cached remote item an event of the room points at (protected ones spared)."""
    if not room_id.startswith("!") or len(room_id) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room ID")
    found = store.room_media(room_id=room_id)
    ours = get_server_name()
    n = store.quarantine_local(media_ids=[m for s, m in found if s == ours], by=actor.user_id)
    n += store.quarantine_remote(keys=[(s, m) for s, m in found if s != ours], by=actor.user_id)
    record_audit(actor=actor, action="media.quarantine_room", target=room_id,
                 counts={"quarantined": n, "referenced": len(found)})  # fmt: skip
    return n


def list_room_media(*, room_id: str) -> dict[str, list[str]]:
    """``GET /_synapse/admin/v1/room/{roomId}/media``: the ``mxc://`` URIs in the room's events
    (unencrypted ones: an encrypted file's URI is inside the ciphertext), ours and others'."""
    if not room_id.startswith("!") or len(room_id) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room ID")
    found = sorted(store.room_media(room_id=room_id))
    ours = get_server_name()
    return {
        "local": [f"mxc://{s}/{m}" for s, m in found if s == ours],
        "remote": [f"mxc://{s}/{m}" for s, m in found if s != ours],
    }


def do_quarantine_user_media(*, actor: Actor, user_id: str) -> int:
    """Every local item ``user_id`` uploaded (protected ones spared)."""
    if not user_id.startswith("@") or len(user_id) > 255:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
    n = store.quarantine_local(uploader=user_id, by=actor.user_id)
    record_audit(actor=actor, action="media.quarantine_user", target=user_id, counts={"quarantined": n})
    return n


def do_protect(*, actor: Actor, media_id: str, protected: bool) -> bool:
    """Protect local media from quarantine and purges (or lift the protection). False if unknown."""
    if not is_valid_media_id(media_id):
        raise MatrixError(404, "M_NOT_FOUND", "Unknown media")
    done = store.set_protected(media_id=media_id, protected=protected)
    if not done:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown media")
    record_audit(actor=actor, action="media.protect" if protected else "media.unprotect",
                 target=f"mxc://{get_server_name()}/{media_id}")  # fmt: skip
    return done


# --------------------------------------------------------------------------- listing, usage


def _int_param(query: Any, name: str, default: int | None, *, minimum: int = 0) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not str(raw).isdigit() or int(raw) < minimum:
        raise MatrixError(400, "M_INVALID_PARAM", f"{name} must be an integer >= {minimum}")
    return int(raw)


def _direction(query: Any) -> bool | None:
    value = query.get("dir")
    if value is None:
        return None
    if value not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", "dir must be f or b")
    return value == "b"


def check_delete_user_media(*, actor: Actor, user_id: str, query: Any) -> dict[str, Any]:
    """``DELETE /_synapse/admin/v1/users/{userId}/media``: the page the same parameters list
    (``GET``, ``admin_users.list_media_json``), deleted here. No ``next_token``: what remains
    has a new order."""
    page = admin_users.list_media_json(user=admin_users.access_user(user_id), query=query)
    result = do_delete_local_media(actor=actor, media_ids=[m["media_id"] for m in page["media"]])
    return {"deleted_media": result.deleted_media, "total": len(result.deleted_media)}


def media_usage(query: Any) -> dict[str, Any]:
    """``GET /_synapse/admin/v1/statistics/users/media``."""
    order_by = query.get("order_by") or "user_id"
    if order_by not in store.USAGE_ORDER:
        raise MatrixError(400, "M_INVALID_PARAM", f"order_by must be one of {', '.join(store.USAGE_ORDER)}")
    offset = _int_param(query, "from", 0)
    limit = _int_param(query, "limit", 100, minimum=1)
    from_ts = _int_param(query, "from_ts", None)
    until_ts = _int_param(query, "until_ts", None)
    if from_ts is not None and until_ts is not None and until_ts < from_ts:
        raise MatrixError(400, "M_INVALID_PARAM", "until_ts must not be smaller than from_ts")
    term = query.get("search_term")
    if term is not None and term == "":
        raise MatrixError(400, "M_INVALID_PARAM", "search_term must not be empty")
    assert offset is not None and limit is not None
    rows, total = store.media_usage(
        order_by=order_by, backwards=bool(_direction(query)), offset=offset, limit=limit,
        from_ts=from_ts, until_ts=until_ts, search_term=term,
    )  # fmt: skip
    out: dict[str, Any] = {"users": rows, "total": total}
    if offset + len(rows) < total:
        out["next_token"] = offset + len(rows)
    return out

"""Backups an operator can restore from, and proof that they can (``manage.py backup``).

A backup is one directory::

    manifest.json          what the backup holds and what to check it against (below)
    database.pgdump        pg_dump --format=custom   (or database.sqlite3: SQLite's online backup)
    keys/<key file>        the signing key file (current keys); old keys' public halves are in
                           the config's old_signing_keys and in the manifest
    config/dagma.yaml      the configuration; secrets in it are listed in the manifest
    media/content/ab/cd/…  the media store's blobs, named by their SHA-256 (unless --no-media)

The manifest records the Dagma version, the applied migrations, the row count of every table
and the stream positions *of the dumped snapshot* (``dagcore.store.backup``), the media blobs
the database references, the key IDs and public keys, and the config's secret keys.

``check_backup`` restores the dump into a scratch database and compares it with the manifest,
checks the DAG of the copy, the media blobs' hashes, the keys against what the server publishes
(``GET /_matrix/key/v2/server``) and the E2EE key-backup rows. Its verdict is stored as the
check result ``backup_verify``; ``backup_verify_age`` turns that into the warning ``doctor``
gives when the last good verification is older than ``BACKUP_VERIFY_MAX_AGE_MS``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from dagcore import __version__
from dagcore.actions.audit import Actor, record_audit
from dagcore.clock import now_ms
from dagcore.media.filestore import MediaFileStore, get_file_store
from dagcore.protocol import signing
from dagcore.server_keys import build_server_key_response
from dagcore.store import backup as store
from dagcore.store import operations

MANIFEST = "manifest.json"
FORMAT = 1
CHECK_NAME = "backup_verify"
#: ``doctor`` warns when the last verified backup is older than this (a monthly routine + slack).
BACKUP_VERIFY_MAX_AGE_MS = 35 * 24 * 3600 * 1000
#: Config keys whose values are secrets (matched against each key's name, nested keys too).
SECRET_KEY_WORDS = ("secret", "password", "macaroon", "private_key")
#: Not secrets although the name says so: they hold a path, not the secret itself.
NOT_SECRET_KEYS = frozenset({"tls_private_key_path", "signing_key_path"})
#: The E2EE server-side key backup tables (spec: "Server-side key backups").
KEY_BACKUP_TABLES = ("e2e_room_keys_versions", "e2e_room_keys")


class BackupError(Exception):
    """The backup cannot be made (bad destination, dump failed): nothing usable was written."""


# --------------------------------------------------------------------------- create


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def secret_config_keys(config: Any, prefix: str = "") -> list[str]:
    """Dotted names of the config entries holding secrets (``registration_shared_secret``,
    ``form_secret``, ``macaroon_secret_key``, ``database.args.password``...)."""
    out: list[str] = []
    if isinstance(config, dict):
        for key, value in config.items():
            name = f"{prefix}{key}"
            if (
                isinstance(key, str)
                and key not in NOT_SECRET_KEYS
                and any(w in key.lower() for w in SECRET_KEY_WORDS)
            ):
                if value is not None:
                    out.append(name)
            else:
                out.extend(secret_config_keys(value, prefix=name + "."))
    return sorted(out)


def _check_destination(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest}: exists and is not an empty directory (a backup never overwrites one)")


def do_create_backup(*, dest: Path, include_media: bool, actor: Actor) -> dict[str, Any]:
    """Write a backup into ``dest`` (a new or empty directory); returns its manifest."""
    _check_destination(dest)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)  # keys and secrets inside
    started = now_ms()
    try:
        manifest = _write_backup(dest, include_media=include_media, started=started)
    except (store.BackupDatabaseError, OSError) as exc:
        # Nothing half-written stays behind to be mistaken for a backup.
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            for entry in dest.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        if not isinstance(exc, store.DatabaseUnreachable):  # else there is nowhere to record it
            record_audit(
                actor=actor, action="backup.create", target=str(dest), result="failed", error=str(exc)
            )
        raise BackupError(str(exc)) from exc
    record_audit(
        actor=actor, action="backup.create", target=str(dest), params={"media": include_media},
        counts={"tables": len(manifest["database"]["row_counts"]), "media": len(manifest["media"]["blobs"])},
    )  # fmt: skip
    return manifest


def _write_backup(dest: Path, *, include_media: bool, started: int) -> dict[str, Any]:
    dump_name, facts = store.dump_database(dest_dir=dest)
    media = _backup_media(dest, facts.media_digests, copy=include_media)
    keys = _backup_keys(dest)
    config = _backup_config(dest)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "dagma_version": __version__,
        "server_name": str(settings.SERVER_NAME),
        "created_ts": started,
        "finished_ts": now_ms(),
        "database": {
            "engine": store.database_engine(),
            "file": dump_name,
            "sha256": _sha256_file(dest / dump_name),
            "migrations": facts.migrations,
            "latest_migration": _latest(facts.migrations, "dagcore"),
            "row_counts": facts.row_counts,
            "stream_positions": facts.stream_positions,
            "max_stream_ordering": facts.max_stream_ordering,
        },
        "media": media,
        "keys": keys,
        "config": config,
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def _latest(migrations: list[str], app: str) -> str | None:
    own = sorted(m for m in migrations if m.startswith(app + "."))
    return own[-1] if own else None


def _backup_media(dest: Path, digests: list[str], *, copy: bool) -> dict[str, Any]:
    live = get_file_store()
    target = MediaFileStore(dest / "media")
    blobs: dict[str, int] = {}
    missing: list[str] = []
    for sha in digests:
        src = live.blob_path(sha)
        try:
            if copy:
                out = target.blob_path(sha)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, out)
                blobs[sha] = out.stat().st_size
            else:
                blobs[sha] = src.stat().st_size
        except FileNotFoundError:
            missing.append(sha)  # referenced but already absent from the live store
    return {"copied": copy, "blobs": blobs, "missing_at_backup": missing}


def _backup_keys(dest: Path) -> dict[str, Any]:
    key_path = Path(settings.DAGMA.signing_key_path)
    (dest / "keys").mkdir()
    out = dest / "keys" / key_path.name
    shutil.copy2(key_path, out)
    os.chmod(out, 0o600)
    keys = signing.read_signing_keys(out.read_text())
    return {
        "file": f"keys/{key_path.name}",
        "verify_keys": {signing.key_id(k): signing.encode_verify_key_base64(k) for k in keys},
        "old_verify_keys": {
            kid: {"key": entry["key"], "expired_ts": entry["expired_ts"]}
            for kid, entry in (settings.DAGMA.old_signing_keys or {}).items()
        },
    }


def _backup_config(dest: Path) -> dict[str, Any]:
    path = settings.DAGMA.path
    if path is None or not Path(path).exists():
        return {"file": None, "secret_keys": []}
    (dest / "config").mkdir()
    out = dest / "config" / "dagma.yaml"
    shutil.copy2(path, out)
    os.chmod(out, 0o600)
    raw = yaml.safe_load(out.read_text()) or {}
    return {"file": "config/dagma.yaml", "secret_keys": secret_config_keys(raw)}


# --------------------------------------------------------------------------- verify

OK, WARN, FAIL = "ok", "warn", "fail"
_RANK = {OK: 0, WARN: 1, FAIL: 2}


@dataclass
class Finding:
    name: str
    status: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyReport:
    backup: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def status(self) -> str:
        return max((f.status for f in self.findings), key=_RANK.__getitem__, default=FAIL)

    @property
    def exit_code(self) -> int:
        return _RANK[self.status]

    def add(self, name: str, status: str, message: str, **details: Any) -> None:
        self.findings.append(Finding(name, status, message, details))

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup": self.backup,
            "verdict": self.status.upper(),
            "checks": [asdict(f) for f in self.findings],
        }


def check_backup(
    *, src: Path, sample: int | None, run_dag_check: Callable[[str], Finding] | None = None
) -> VerifyReport:
    """Verify the backup in ``src`` (``sample``: check that many media blobs, None = all) and
    record the verdict as the check result ``backup_verify``."""
    report = VerifyReport(backup=str(src))
    try:
        _verify(report, src, sample=sample, run_dag_check=run_dag_check or dag_check_on)
    finally:
        failed = [f"{f.name}: {f.message}" for f in report.findings if f.status == FAIL]
        warned = [f"{f.name}: {f.message}" for f in report.findings if f.status == WARN]
        operations.insert_check_result(
            name=CHECK_NAME, status=report.status,
            summary="; ".join(failed or warned) or f"backup {src} verified",
            details=report.as_dict(), ts=now_ms(),
        )  # fmt: skip
    return report


def _verify(
    report: VerifyReport, src: Path, *, sample: int | None, run_dag_check: Callable[[str], Finding]
) -> None:
    try:
        manifest = json.loads((src / MANIFEST).read_text())
        db = manifest["database"]
        assert manifest.get("format") == FORMAT
    except (OSError, ValueError, KeyError, AssertionError, TypeError) as exc:
        report.add("manifest", FAIL, f"no readable {MANIFEST} of format {FORMAT} in {src} ({exc!r})")
        return
    report.add("manifest", OK, f"Dagma {manifest.get('dagma_version')}, made at {manifest.get('created_ts')}")
    dump = src / str(db["file"])
    db_keys: list[store.OwnKeyRow] = []
    if not dump.is_file():
        report.add("database_dump", FAIL, f"database dump {dump.name} is missing")
    elif _sha256_file(dump) != db["sha256"]:
        report.add(
            "database_dump",
            FAIL,
            f"database dump {dump.name} is damaged (its SHA-256 differs from the manifest)",
        )
    else:
        report.add("database_dump", OK, f"{dump.name} intact")
        db_keys = _verify_database(report, dump, db, run_dag_check=run_dag_check)
    _verify_media(report, src, manifest.get("media") or {}, sample=sample)
    _verify_keys(report, src, manifest.get("keys") or {}, db_keys=db_keys)
    _verify_config(report, src, manifest.get("config") or {})


def _verify_database(
    report: VerifyReport, dump: Path, db: dict[str, Any], *, run_dag_check: Callable[[str], Finding]
) -> list[store.OwnKeyRow]:
    """Restore and check the dump; returns the signing keys the copy holds (if it keeps any)."""
    if db["engine"] != store.database_engine():
        # A PostgreSQL backup is restored on PostgreSQL; we verify on the engine we run.
        report.add(
            "restore",
            FAIL,
            f"the backup is a {db['engine']} dump; this server runs {store.database_engine()}",
        )
        return []
    try:
        with store.restore_scratch(dump=dump, engine=db["engine"]) as scratch:
            report.add("restore", OK, "restored into a scratch database")
            facts = scratch.facts()
            _verify_schema(report, facts.migrations, db)
            _verify_counts(report, facts.row_counts, facts.stream_positions, db)
            report.findings.append(run_dag_check(scratch.url))
            _verify_key_backup(report, facts.row_counts, db)
            return scratch.own_signing_keys()
    except store.BackupDatabaseError as exc:
        report.add("restore", FAIL, str(exc))
    return []


def _verify_schema(report: VerifyReport, migrations: list[str], db: dict[str, Any]) -> None:
    if migrations != sorted(db["migrations"]):
        report.add("schema", FAIL, "the restored migrations differ from the manifest's",
                   restored=migrations[-3:], manifest=sorted(db["migrations"])[-3:])  # fmt: skip
        return
    code = set(store.code_migrations())
    unknown = sorted(set(migrations) - code)
    behind = sorted(m for m in code - set(migrations) if m.startswith("dagcore."))
    if unknown:
        report.add(
            "schema",
            FAIL,
            f"made by a newer Dagma: migrations {', '.join(unknown[:5])} are unknown to this code",
        )
    elif behind:
        report.add(
            "schema", WARN, f"older schema: run `manage.py migrate` after restoring ({', '.join(behind[:5])})"
        )
    else:
        report.add("schema", OK, f"migrations up to {db.get('latest_migration')}")


def _verify_counts(
    report: VerifyReport, counts: dict[str, int], positions: dict[str, int], db: dict[str, Any]
) -> None:
    expected: dict[str, int] = db["row_counts"]
    wrong = {t: {"manifest": n, "restored": counts.get(t)} for t, n in expected.items() if counts.get(t) != n}
    wrong.update({t: {"manifest": None, "restored": n} for t, n in counts.items() if t not in expected})
    if wrong:
        report.add("row_counts", FAIL, f"row counts differ in {', '.join(sorted(wrong)[:8])}", tables=wrong)
    elif positions != db.get("stream_positions", positions):
        report.add("row_counts", FAIL, "stream positions differ from the manifest", restored=positions)
    else:
        report.add("row_counts", OK, f"{len(counts)} tables, {sum(counts.values())} rows as in the manifest")


def _verify_key_backup(report: VerifyReport, counts: dict[str, int], db: dict[str, Any]) -> None:
    restored = {t: counts.get(t, 0) for t in KEY_BACKUP_TABLES}
    expected = {t: db["row_counts"].get(t, 0) for t in KEY_BACKUP_TABLES}
    if any(t not in counts for t in KEY_BACKUP_TABLES):
        report.add("e2ee_key_backup", FAIL, "the E2EE key-backup tables are missing from the copy")
    elif restored != expected:
        report.add("e2ee_key_backup", FAIL, f"E2EE key-backup rows differ: {restored} vs {expected}")
    else:
        report.add("e2ee_key_backup", OK,
                   f"{restored['e2e_room_keys_versions']} key-backup versions, {restored['e2e_room_keys']} room keys")  # fmt: skip


def _verify_media(report: VerifyReport, src: Path, media: dict[str, Any], *, sample: int | None) -> None:
    blobs: dict[str, int] = media.get("blobs") or {}
    copied = bool(media.get("copied"))
    store_ = MediaFileStore(src / "media") if copied else get_file_store()
    where = "the backup" if copied else "the live media store (backup made with --no-media)"
    names = sorted(blobs)
    if sample is not None and sample < len(names):
        names = random.sample(names, sample)
    lost: list[str] = []
    damaged: list[str] = []
    for sha in names:
        path = store_.blob_path(sha)
        if not path.is_file():
            lost.append(sha)
        elif _sha256_file(path) != sha:
            damaged.append(sha)
    if lost or damaged:
        parts = ([f"{len(lost)} media file(s) lost"] if lost else []) + (
            [f"{len(damaged)} media file(s) damaged"] if damaged else []
        )
        report.add("media", FAIL, f"{' and '.join(parts)} in {where}", lost=lost[:20], damaged=damaged[:20])
    elif media.get("missing_at_backup"):
        report.add("media", WARN, f"{len(media['missing_at_backup'])} blob(s) were already missing when the backup was made",
                   missing=media["missing_at_backup"][:20])  # fmt: skip
    elif not copied:
        report.add(
            "media", WARN, f"{len(names)} of {len(blobs)} blobs intact in {where}: the backup holds no media"
        )
    else:
        report.add("media", OK, f"{len(names)} of {len(blobs)} blobs intact (SHA-256 checked)")


def _verify_keys(
    report: VerifyReport, src: Path, keys: dict[str, Any], *, db_keys: list[store.OwnKeyRow]
) -> None:
    """The keys a restore gets back (the key file, and the database's key table where keys are
    kept there) against what the server publishes: every published key, current or old, must
    be in the backup — current ones with their private half — and the backup must hold no
    key the server does not publish."""
    try:
        backed_up = signing.read_signing_keys((src / str(keys["file"])).read_text())
    except (OSError, KeyError, TypeError, ValueError) as exc:
        report.add("signing_keys", FAIL, f"the backup's signing key file is missing or unreadable ({exc!r})")
        return
    private = {signing.key_id(k): signing.encode_verify_key_base64(k) for k in backed_up}
    private.update({k.key_id: k.verify_key for k in db_keys if k.has_private_half})
    backed_old = {kid: v["key"] for kid, v in (keys.get("old_verify_keys") or {}).items()}
    backed_old.update({k.key_id: k.verify_key for k in db_keys if k.expired_ts is not None})
    published = build_server_key_response(now_ms=now_ms())
    current = {kid: v["key"] for kid, v in published["verify_keys"].items()}
    old = {kid: v["key"] for kid, v in published.get("old_verify_keys", {}).items()}
    missing = sorted(kid for kid, vk in current.items() if private.get(kid) != vk)
    foreign = sorted(kid for kid, vk in private.items() if current.get(kid, old.get(kid)) != vk)
    if missing or foreign:
        report.add("signing_keys", FAIL,
                   f"signing key mismatch: the server publishes {sorted(current)}, the backup holds "
                   f"{sorted(private)} (missing {missing}, not published {foreign}): a restore would "
                   "sign with a key other servers do not know",
                   backup=private, published=current)  # fmt: skip
        return
    lost_old = sorted(kid for kid in old if backed_old.get(kid, private.get(kid)) != old[kid])
    if lost_old:
        report.add("signing_keys", FAIL, f"old verify keys {lost_old} are published but not in the backup")
        return
    report.add("signing_keys", OK, f"keys {sorted(current)} (+{len(old)} old) match /_matrix/key/v2/server")


def _verify_config(report: VerifyReport, src: Path, config: dict[str, Any]) -> None:
    if not config.get("file"):
        report.add("config", WARN, "the backup holds no configuration file (the server ran on defaults)")
        return
    try:
        raw = yaml.safe_load((src / str(config["file"])).read_text())
        assert isinstance(raw, dict)
    except (OSError, yaml.YAMLError, AssertionError) as exc:
        report.add("config", FAIL, f"the backed-up configuration is missing or not YAML ({exc!r})")
        return
    missing = [k for k in config.get("secret_keys", []) if k not in secret_config_keys(raw)]
    if missing:
        report.add("config", FAIL, f"secrets listed in the manifest are absent from the config: {missing}")
    else:
        report.add(
            "config",
            OK,
            f"configuration present; secrets: {', '.join(config.get('secret_keys', [])) or 'none'}",
        )


# --------------------------------------------------------------------------- DAG check on the copy


def dag_check_on(database_url: str) -> Finding:
    """``manage.py dag check --all`` against the restored copy (a subprocess whose
    ``DAGMA_DATABASE_URL`` names the copy)."""
    env = {**os.environ, "DAGMA_DATABASE_URL": database_url, "DAGMA_NO_BOOTSTRAP": "1"}
    if settings.DAGMA.path is not None:
        env["DAGMA_CONFIG"] = str(settings.DAGMA.path)
    manage = Path(settings.BASE_DIR) / "manage.py"
    result = subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, str(manage), "dag", "check", "--all"],
        env=env, capture_output=True, text=True, check=False, timeout=3600,
    )  # fmt: skip
    tail = (result.stdout.strip() or result.stderr.strip())[-300:]
    status = {0: OK, 1: WARN}.get(result.returncode, FAIL)
    return Finding("dag_check", status, f"`dag check --all` on the copy exited {result.returncode}: {tail}")


# --------------------------------------------------------------------------- doctor's view


def backup_verify_age(*, now: int) -> tuple[str, str]:
    """(status, message) for ``doctor``: warn when no backup verified OK (or WARN) within
    ``BACKUP_VERIFY_MAX_AGE_MS``, fail when the last verification failed."""
    results = operations.latest_check_results([CHECK_NAME])
    if not results:
        return WARN, "no backup was ever verified (`manage.py backup verify DIR`)"
    last = results[0]
    age_days = (now - last.ts) / 86_400_000
    if last.status == FAIL:
        return FAIL, f"the last backup verification failed {age_days:.0f} days ago: {last.summary}"
    if now - last.ts > BACKUP_VERIFY_MAX_AGE_MS:
        return WARN, f"the last verified backup is {age_days:.0f} days old (more than 35)"
    return OK, f"backup verified {age_days:.1f} days ago"


# --------------------------------------------------------------------------- scheduled (beat)

BACKUP_PREFIX = "dagma-"


def _schedule() -> dict[str, Any]:
    return dict(settings.DAGMA.backup_schedule or {})


def list_scheduled_backups(root: Path) -> list[Path]:
    """The backups beat made under ``root`` (those with a manifest), oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(BACKUP_PREFIX) and (p / MANIFEST).is_file())


def do_scheduled_backup(*, now: int, actor: Actor) -> str:
    """Nightly: a backup into ``backup_schedule.dir``/dagma-<UTC time>, then only the newest
    ``keep`` of them are kept (a half-written one, without a manifest, is removed too)."""
    schedule = _schedule()
    if not schedule.get("dir"):
        return "backup_schedule.dir is not set: no scheduled backups"
    root = settings.DAGMA.resolve_path(str(schedule["dir"]))
    root.mkdir(parents=True, exist_ok=True)
    from dagcore.clock import from_ms

    dest = root / f"{BACKUP_PREFIX}{from_ms(now).strftime('%Y%m%dT%H%M%SZ')}"
    try:
        do_create_backup(dest=dest, include_media=bool(schedule.get("media", True)), actor=actor)
    except BackupError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    for stale in [
        p for p in root.iterdir() if p.name.startswith(BACKUP_PREFIX) and not (p / MANIFEST).is_file()
    ]:
        shutil.rmtree(stale, ignore_errors=True)  # a run that died half-way
    kept = list_scheduled_backups(root)
    removed = kept[: max(0, len(kept) - int(schedule.get("keep", 7)))]
    for old in removed:
        shutil.rmtree(old)
    if removed:
        record_audit(actor=actor, action="backup.rotate", target=str(root), counts={"removed": len(removed)})
    return f"{dest.name} written; {len(removed)} old backup(s) removed"


def do_scheduled_verify(*, now: int) -> str:
    """Weekly: verify the newest scheduled backup (recorded as ``backup_verify``)."""
    schedule = _schedule()
    if not schedule.get("dir") or not schedule.get("verify", True):
        return "scheduled verification is off"
    backups = list_scheduled_backups(settings.DAGMA.resolve_path(str(schedule["dir"])))
    if not backups:
        return "no scheduled backup to verify yet"
    report = check_backup(src=backups[-1], sample=None)
    return f"{backups[-1].name}: {report.status.upper()}"

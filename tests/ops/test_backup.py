"""``manage.py backup create`` / ``backup verify`` against real servers with real data.

Each homeserver (PostgreSQL + Redis, and the quick start's SQLite) gets users, a room with
messages, an uploaded file and an E2EE key backup through the client API; the backup made of it
verifies OK, and a damaged dump, a lost media file or a foreign signing key each fail by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dagcore.protocol import signing
from tests.support.client import MatrixClient, q
from tests.support.live import ROOT, LiveServer, _pg_admin

pytestmark = pytest.mark.live

MEDIA_BYTES = b"\x89PNG backup round trip " + bytes(range(256)) * 8
KEY_BACKUP = {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
              "auth_data": {"public_key": "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo", "signatures": {}}}  # fmt: skip
ROOM_KEY = {"first_message_index": 0, "forwarded_count": 0, "is_verified": False,
            "session_data": {"ephemeral": "e", "ciphertext": "c", "mac": "m"}}  # fmt: skip


def populate(server: LiveServer) -> dict[str, Any]:
    """Users, a room with messages, an upload and a key backup, all through the client API."""
    alice = MatrixClient(server.base_url).register()
    bob = MatrixClient(server.base_url).register()
    room = alice.create_room(name="backed up", invite=[bob.user_id])
    bob.join(room)
    sent = [alice.send(room, f"message {i}") for i in range(5)] + [bob.send(room, "reply")]
    mxc = alice.post("/_matrix/media/v3/upload", content=MEDIA_BYTES,
                     headers={"Content-Type": "image/png"}).json["content_uri"]  # fmt: skip
    version = alice.post("/room_keys/version", KEY_BACKUP).json["version"]
    alice.put(f"/room_keys/keys/{q(room)}/{q('session1')}", ROOM_KEY, params={"version": version})
    return {"room": room, "sent": sent, "mxc": mxc, "alice": alice.user_id, "version": version}


def run(server: LiveServer, *args: str) -> tuple[int, dict[str, Any]]:
    result = server.manage("backup", *args, "--json")
    out = result.stdout.decode()
    assert out.strip(), result.stderr.decode()
    return result.returncode, json.loads(out)


def checks(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def copy_of(backup: Path, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    shutil.copytree(backup, out)
    return out


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def backed_up(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, Path, dict[str, Any]]]:
    database = request.param
    root = tmp_path_factory.mktemp(f"backup-{database}")
    server = LiveServer(root / "server", database=database, redis=database == "postgres")
    server.start()
    try:
        data = populate(server)
        code, manifest = run(server, "create", str(root / "backup"))
        assert code == 0, manifest
        yield server, root / "backup", {**data, "manifest": manifest}
    finally:
        server.destroy()


def test_a_backup_of_a_used_server_restores_and_verifies_ok(backed_up) -> None:
    server, backup, data = backed_up
    manifest = data["manifest"]
    db = manifest["database"]
    assert db["engine"] == ("postgresql" if server.database == "postgres" else "sqlite")
    assert db["latest_migration"].startswith("dagcore.")
    assert db["row_counts"]["users"] == 2
    assert db["row_counts"]["e2e_room_keys"] == 1 and db["row_counts"]["e2e_room_keys_versions"] == 1
    assert db["row_counts"]["events"] >= 6 + 5  # the messages and the room's state events
    assert db["max_stream_ordering"] > 0 and db["stream_positions"]
    sha = hashlib.sha256(MEDIA_BYTES).hexdigest()
    assert sha in manifest["media"]["blobs"]
    assert (backup / "media" / "content" / sha[:2] / sha[2:4] / sha).read_bytes() == MEDIA_BYTES
    assert {"registration_shared_secret", "form_secret"} <= set(manifest["config"]["secret_keys"])
    assert manifest["keys"]["verify_keys"] and (backup / manifest["keys"]["file"]).is_file()
    assert oct(backup.stat().st_mode & 0o777) == "0o700"

    code, report = run(server, "verify", str(backup))
    assert (code, report["verdict"]) == (0, "OK"), report
    assert {"database_dump", "restore", "schema", "row_counts", "media", "signing_keys",
            "e2ee_key_backup", "config"} <= set(checks(report))  # fmt: skip
    assert "dag_check" in checks(report)
    if server.database == "postgres":
        # Recorded for doctor; the scratch database is gone.
        rows = server.query("SELECT status FROM check_results WHERE name = 'backup_verify' ORDER BY id DESC")
        assert rows[0] == ("ok",)
        assert not server.query(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{server.db_name}_verify_%",)
        )


def test_a_damaged_dump_fails_verification_by_name(backed_up, tmp_path: Path) -> None:
    server, backup, data = backed_up
    damaged = copy_of(backup, tmp_path, "damaged")
    dump = damaged / data["manifest"]["database"]["file"]
    raw = bytearray(dump.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\0" * 64
    dump.write_bytes(bytes(raw))
    code, report = run(server, "verify", str(damaged))
    assert (code, report["verdict"], checks(report)["database_dump"]) == (2, "FAIL", "fail"), report

    # Damaged before its manifest was written (the hash agrees): the restore itself fails.
    truncated = copy_of(backup, tmp_path, "truncated")
    dump = truncated / data["manifest"]["database"]["file"]
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 3])
    manifest = json.loads((truncated / "manifest.json").read_text())
    manifest["database"]["sha256"] = hashlib.sha256(dump.read_bytes()).hexdigest()
    (truncated / "manifest.json").write_text(json.dumps(manifest))
    code, report = run(server, "verify", str(truncated))
    assert (code, checks(report)["restore"]) == (2, "fail"), report


def test_a_lost_media_file_fails_verification_by_name(backed_up, tmp_path: Path) -> None:
    server, backup, _ = backed_up
    lost = copy_of(backup, tmp_path, "lost-media")
    sha = hashlib.sha256(MEDIA_BYTES).hexdigest()
    (lost / "media" / "content" / sha[:2] / sha[2:4] / sha).unlink()
    code, report = run(server, "verify", str(lost), "--sample", "5")
    assert (code, report["verdict"], checks(report)["media"]) == (2, "FAIL", "fail"), report
    media = next(c for c in report["checks"] if c["name"] == "media")
    assert media["details"]["lost"] == [sha]


def test_a_signing_key_other_than_the_published_one_fails_verification(backed_up, tmp_path: Path) -> None:
    server, backup, data = backed_up
    foreign = copy_of(backup, tmp_path, "foreign-key")
    (foreign / data["manifest"]["keys"]["file"]).write_text(
        signing.write_signing_keys([signing.generate_signing_key()])
    )
    code, report = run(server, "verify", str(foreign))
    assert (code, checks(report)["signing_keys"]) == (2, "fail"), report
    assert "mismatch" in next(c for c in report["checks"] if c["name"] == "signing_keys")["message"]


def test_backup_create_refuses_a_directory_that_is_not_empty(backed_up) -> None:
    server, backup, _ = backed_up
    before = sorted(p.name for p in backup.iterdir())
    result = server.manage("backup", "create", str(backup))
    assert result.returncode == 2 and b"not an empty directory" in result.stderr
    assert sorted(p.name for p in backup.iterdir()) == before


def test_a_backup_that_cannot_read_the_database_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGMA_") or k == "DAGMA_VENV"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(DAGMA_CONFIG=str(tmp_path / "dagma.yaml"), DAGMA_NO_BOOTSTRAP="1",
               DAGMA_DATABASE_URL="postgres://postgres@127.0.0.1:5432/dagma_no_such_database")  # fmt: skip
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "backup", "create", str(tmp_path / "b")],
                            env=env, capture_output=True, check=False)  # fmt: skip
    assert result.returncode == 2 and b"backup create: cannot read the database" in result.stderr, (
        result.stderr
    )
    assert not (tmp_path / "b").exists()


def test_a_backup_without_media_checks_the_live_store_and_warns(backed_up, tmp_path: Path) -> None:
    server, _, _ = backed_up
    code, manifest = run(server, "create", str(tmp_path / "no-media"), "--no-media")
    assert code == 0 and manifest["media"]["copied"] is False and manifest["media"]["blobs"]
    assert not (tmp_path / "no-media" / "media").exists()
    code, report = run(server, "verify", str(tmp_path / "no-media"))
    assert (code, report["verdict"], checks(report)["media"]) == (1, "WARN", "warn"), report


def test_a_backup_restored_as_the_readme_says_serves_the_same_accounts_rooms_media_and_key_backup(
    backed_up, tmp_path: Path
) -> None:
    """The README's restore steps, done by hand into a new server: database, media, keys."""
    server, backup, data = backed_up
    manifest = data["manifest"]
    restored = LiveServer(tmp_path / "restored", database=server.database, redis=server.redis,
                          db_name=f"{server.db_name}_restored")  # fmt: skip
    restored.write_config()
    if server.database == "postgres":
        _pg_admin(f'CREATE DATABASE "{restored.db_name}"')
        subprocess.run(["pg_restore", "--no-owner", "-h", "127.0.0.1", "-U", "postgres", "-d", restored.db_name,
                        str(backup / manifest["database"]["file"])], check=True, capture_output=True)  # fmt: skip
    else:
        shutil.copyfile(backup / manifest["database"]["file"], restored.workdir / "homeserver.db")
    shutil.copytree(backup / "media" / "content", restored.workdir / "media_store" / "content")
    shutil.copyfile(backup / manifest["keys"]["file"], restored.workdir / "localhost.signing.key")
    try:
        restored.start()
        alice = MatrixClient(restored.base_url)
        login = alice.post("/login", {"type": "m.login.password", "password": "correct horse battery",
                                      "identifier": {"type": "m.id.user", "user": data["alice"]}}, auth=False)  # fmt: skip
        alice.access_token = login.json["access_token"]
        page = alice.get(f"/rooms/{q(data['room'])}/messages", params={"dir": "b", "limit": 50}).json
        assert set(data["sent"]) <= {e["event_id"] for e in page["chunk"]}
        server_name, media_id = data["mxc"].removeprefix("mxc://").split("/")
        media = alice.get(f"/_matrix/client/v1/media/download/{server_name}/{media_id}")
        assert media.raw.content == MEDIA_BYTES
        assert alice.get("/room_keys/version").json["version"] == data["version"]
        keys = alice.get("/_matrix/key/v2/server").json["verify_keys"]
        assert keys == {kid: {"key": key} for kid, key in manifest["keys"]["verify_keys"].items()}
    finally:
        restored.destroy()
        if server.database == "postgres":
            _pg_admin(f'DROP DATABASE IF EXISTS "{restored.db_name}" WITH (FORCE)')

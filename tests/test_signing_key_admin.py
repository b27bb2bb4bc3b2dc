"""Our signing keys as operators handle them (``dagcore.actions.signing_keys``), in-process:
Synapse's key file and ``old_signing_keys`` imported then exported unchanged, a lost key's
public half kept published, bad input refused with nothing changed. The running-server side
(rotation seen by a live Embassy and another server) is in tests/federation/test_live_signing_keys.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from dagcore import server_keys
from dagcore.actions import signing_keys as actions
from dagcore.actions.audit import Actor
from dagcore.cli.when import parse_point_in_time, parse_size
from dagcore.clock import now_ms
from dagcore.protocol import signing
from dagcore.store import server_keys as key_store

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]

CLI = Actor(user_id="cli:test", via="cli")


@pytest.fixture
def key_file(settings, tmp_path: Path) -> Iterator[Path]:
    """This server's key file, a copy the test may have rewritten."""
    path = tmp_path / "ours.signing.key"
    path.write_text(Path(settings.DAGMA.signing_key_path).read_text())
    settings.DAGMA = dataclasses.replace(settings.DAGMA, signing_key_path=str(path))
    server_keys.forget_cached_keys()
    yield path
    server_keys.forget_cached_keys()


def synapse_identity(tmp_path: Path) -> tuple[Path, Path, signing.SigningKey, dict[str, dict[str, object]]]:
    key = signing.generate_signing_key()
    old = signing.generate_signing_key()
    key_path = tmp_path / "matrix.example.signing.key"
    key_path.write_text(signing.write_signing_keys([key]))
    old_keys = {
        signing.key_id(old): {"key": signing.encode_verify_key_base64(old), "expired_ts": 1_600_000_000_000}
    }
    config = tmp_path / "homeserver.yaml"
    config.write_text(yaml.safe_dump({"server_name": "matrix.example", "old_signing_keys": old_keys}))
    return key_path, config, key, old_keys


def test_a_synapse_key_file_and_its_old_keys_round_trip_through_import_and_export(key_file, tmp_path) -> None:
    key_path, config, key, old_keys = synapse_identity(tmp_path)
    ours_before = signing.key_id(server_keys.get_signing_key())

    preview = actions.do_import_synapse_keys(
        actor=CLI, key_file=key_path, synapse_config=config, dry_run=True
    )
    assert preview.key_id == signing.key_id(key) and server_keys.get_signing_key() is not None
    assert signing.key_id(server_keys.get_signing_key()) == ours_before  # the dry run changed nothing

    actions.do_import_synapse_keys(actor=CLI, key_file=key_path, synapse_config=config)
    assert signing.key_id(server_keys.get_signing_key()) == signing.key_id(key)
    assert key_file.read_text() == key_path.read_text()  # the configured key file follows
    published = server_keys.build_server_key_response(now_ms=now_ms())
    assert list(published["verify_keys"]) == [signing.key_id(key)]
    assert set(old_keys) | {ours_before} == set(published["old_verify_keys"])

    out, old_out = tmp_path / "export.signing.key", tmp_path / "old_keys.yaml"
    call_command("signing_key", "export", "--out", str(out), "--old-keys-out", str(old_out))
    assert out.read_text() == key_path.read_text()
    assert out.stat().st_mode & 0o777 == 0o600
    exported = yaml.safe_load(old_out.read_text())["old_signing_keys"]
    assert {k: exported[k] for k in old_keys} == old_keys
    assert set(exported) == set(old_keys) | {ours_before}
    with pytest.raises(CommandError, match="exists"):
        call_command("signing_key", "export", "--out", str(out))


def test_a_lost_key_keeps_its_public_half_published_without_a_private_half(key_file) -> None:
    lost = signing.generate_signing_key()
    lost_id, lost_pub = signing.key_id(lost), signing.encode_verify_key_base64(lost)
    old_id = signing.key_id(server_keys.get_signing_key())
    with pytest.raises(actions.KeyAdminError, match="--public-key"):
        actions.check_lost_key(key_id=lost_id, public_key=None, expired_ts=now_ms())
    entry = actions.check_lost_key(key_id=lost_id, public_key=lost_pub, expired_ts=1_700_000_000_000)
    result = actions.do_rotate_signing_key(actor=CLI, lost=[entry])
    assert result.expired == [old_id] and result.lost == [lost_id]
    published = server_keys.build_server_key_response(now_ms=now_ms())
    assert published["old_verify_keys"][lost_id] == {"key": lost_pub, "expired_ts": 1_700_000_000_000}
    assert published["old_verify_keys"][old_id]["expired_ts"] == result.expired_ts
    assert list(published["verify_keys"]) == [result.new_key_id]
    rows = {k.key_id: k for k in key_store.list_own_keys()}
    assert rows[lost_id].seed is None and rows[old_id].seed is not None


def test_bad_key_input_is_refused_and_changes_nothing(key_file, tmp_path) -> None:
    before = key_store.list_own_keys() or None
    current = signing.key_id(server_keys.get_signing_key())
    bad = tmp_path / "bad.key"
    bad.write_text("ed25519 a_x not-base64\n")
    with pytest.raises(CommandError, match="line 1"):
        call_command("signing_key", "import", "--key-file", str(bad))
    config = tmp_path / "homeserver.yaml"
    config.write_text(yaml.safe_dump({"old_signing_keys": {"ed25519:x": {"key": "short", "expired_ts": 1}}}))
    (tmp_path / "g").mkdir()
    good, _, _, _ = synapse_identity(tmp_path / "g")
    with pytest.raises(CommandError, match="old_signing_keys"):
        call_command("signing_key", "import", "--key-file", str(good), "--synapse-config", str(config))
    with pytest.raises(CommandError, match="future"):
        call_command("compromised", "--since", str(now_ms() + 3_600_000))
    with pytest.raises(CommandError, match="not a time"):
        call_command("compromised", "--since", "last tuesday")
    assert signing.key_id(server_keys.get_signing_key()) == current
    assert before is None or [k.key_id for k in key_store.list_own_keys()] == [k.key_id for k in before]


def test_operators_times_and_sizes() -> None:
    now = 1_800_000_000_000
    assert parse_point_in_time("30d", now=now) == now - 30 * 86_400_000
    assert parse_point_in_time("30 days ago", now=now) == now - 30 * 86_400_000
    assert parse_point_in_time("2 hours ago", now=now) == now - 2 * 3_600_000
    assert parse_point_in_time("2026-01-31", now=now) == 1_769_817_600_000
    assert parse_point_in_time("2026-01-31T12:00:00+01:00", now=now) == 1_769_857_200_000
    assert parse_point_in_time("1700000000000", now=now) == 1_700_000_000_000
    assert parse_size("10M") == 10 * 1024 * 1024 and parse_size("512k") == 512 * 1024 and parse_size("7") == 7
    for bad in ("soon", "-3d", ""):
        with pytest.raises(ValueError, match="not a time"):
            parse_point_in_time(bad, now=now)
    with pytest.raises(ValueError, match="not a size"):
        parse_size("ten")


def test_the_text_outputs_name_the_keys_the_counts_and_the_steps_left(key_file, capsys) -> None:
    current = signing.key_id(server_keys.get_signing_key())
    call_command("signing_key", "list", "--no-fetch")
    listing = capsys.readouterr().out
    assert current in listing and "current" in listing
    call_command("compromised", "--since", "1 hour ago", "--dry-run")
    out = capsys.readouterr().out
    assert out.startswith("[dry run] would expire " + current)
    assert "Would revoke" in out and "Remaining steps:" in out and "[ ] " in out
    assert signing.key_id(server_keys.get_signing_key()) == current  # a dry run

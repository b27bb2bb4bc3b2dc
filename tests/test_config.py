"""The operator's config: generation, validation messages, environment overrides."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dagma_project.config import (
    OPTION_BY_NAME,
    OPTIONS,
    ConfigError,
    DagmaConfig,
    build_config,
    describe_options,
    load_config,
)

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("DAGMA_") and k != "DJANGO_SETTINGS_MODULE"
    }
    base.update(DAGMA_NO_BOOTSTRAP="1", **(env or {}))
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=cwd, env=base,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "key", "allowed"),
    [
        ({"enable_registration": "maybe"}, "enable_registration", "true or false"),
        ({"default_room_version": "1"}, "default_room_version", "2, 3"),
        ({"max_upload_size": "lots"}, "max_upload_size", "50M"),
        ({"database": {"name": "mysql"}}, "database.name", "sqlite3, psycopg2"),
        (
            {"database": {"name": "psycopg2", "args": {"prepared_statements": "no"}}},
            "database.args.prepared_statements",
            "true or false",
        ),
        (
            {"listeners": [{"port": 99999, "resources": [{"names": ["client"]}]}]},
            "listeners[0].port",
            "1 to 65535",
        ),
        (
            {"listeners": [{"port": 8008, "resources": [{"names": ["clients"]}]}]},
            "listeners[0].resources.names",
            "client",
        ),
        ({"ip_range_whitelist": ["not-a-cidr"]}, "ip_range_whitelist", "CIDR"),
        ({"rc_message": {"per_second": -1}}, "rc_message.per_second", "non-negative"),
        ({"no_such_option": 1}, "no_such_option", "unknown option"),
        ({"turn_uris": ["stun:stun.example.com"]}, "turn_uris[0]", "turn: or turns:"),
        ({"turn_user_lifetime": "forever"}, "turn_user_lifetime", ""),
    ],
)
def test_a_bad_value_names_the_key_and_what_is_allowed(raw: dict, key: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as exc:
        build_config({"server_name": "example.com", **raw}, env={})
    assert str(exc.value).startswith(key) and allowed in str(exc.value)


def test_a_good_config_fills_defaults_with_synapse_names() -> None:
    config = build_config({"server_name": "example.com", "max_upload_size": "10M"}, env={})
    assert config.max_upload_size == 10 * 1024 * 1024
    assert config.enable_registration is False  # closed by default
    assert config.default_room_version == "12"
    assert config.public_baseurl == "http://example.com:8008/"


def test_open_registration_without_verification_must_be_explicit() -> None:
    with pytest.raises(ConfigError, match="enable_registration_without_verification"):
        build_config({"server_name": "example.com", "enable_registration": True}, env={})
    ok = build_config({"server_name": "example.com", "enable_registration": True,
                       "enable_registration_without_verification": True}, env={})  # fmt: skip
    assert ok.enable_registration is True


def test_the_config_has_one_typed_attribute_per_documented_option() -> None:
    """Code reads options as typed attributes (``settings.DAGMA.max_upload_size``): each option
    documented by ``generate_config --list`` is one, and there is no attribute without a doc."""
    attributes = {f.name: f.type for f in dataclasses.fields(DagmaConfig)}
    assert set(attributes) - {"path", "config_dir"} == set(OPTION_BY_NAME)
    config = build_config({"server_name": "example.com"}, env={})
    assert isinstance(config.max_upload_size, int) and isinstance(config.listeners, list)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.enable_registration = True  # type: ignore[misc]


def test_environment_variables_override_the_file() -> None:
    config = build_config(
        {"server_name": "example.com", "enable_registration": False},
        env={
            "DAGMA_ENABLE_REGISTRATION": "true",
            "DAGMA_REGISTRATION_REQUIRES_TOKEN": "true",
            "DAGMA_DATABASE_URL": "postgres://dagma:secret@db.internal:5433/matrix",
            "DAGMA_REDIS_URL": "redis://cache:6380/2",
        },
    )
    assert config.enable_registration is True
    assert config.database == {"name": "psycopg2", "args": {"database": "matrix", "user": "dagma",
                                  "password": "secret", "host": "db.internal", "port": 5433}}  # fmt: skip
    assert config.redis_url == "redis://cache:6380/2"
    with pytest.raises(ConfigError, match="DAGMA_DATABASE_URL"):
        build_config({"server_name": "example.com"}, env={"DAGMA_DATABASE_URL": "mysql://x"})


def test_every_option_is_documented_with_default_and_example() -> None:
    listing = describe_options()
    for opt in OPTIONS:
        assert f"`{opt.name}`" in listing
        assert opt.doc and opt.example is not None, opt.name


def test_generate_config_writes_a_loadable_config_and_an_ed25519_key(tmp_path: Path) -> None:
    result = _manage(
        "generate_config",
        "--server-name",
        "chat.example.org",
        "--out",
        str(tmp_path / "dagma.yaml"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    key_file = tmp_path / "chat.example.org.signing.key"
    assert re.fullmatch(r"ed25519 a_[A-Za-z0-9]{4} [A-Za-z0-9+/]{43}\n?", key_file.read_text())
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    config = load_config(tmp_path / "dagma.yaml", env={})
    assert config.server_name == "chat.example.org"
    assert Path(config.signing_key_path) == key_file.resolve()
    again = _manage(
        "generate_config", "--server-name", "x.org", "--out", str(tmp_path / "dagma.yaml"), cwd=tmp_path
    )
    assert again.returncode != 0 and "already exists" in again.stderr


def test_serve_with_a_bad_value_fails_with_one_line_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "dagma.yaml").write_text(
        yaml.safe_dump({"server_name": "localhost", "max_upload_size": "huge"})
    )
    result = _manage("serve", "all", cwd=tmp_path)
    assert result.returncode == 2
    assert "max_upload_size" in result.stderr and "Traceback" not in result.stderr


def test_serve_refuses_a_public_admin_listener(tmp_path: Path) -> None:
    _manage(
        "generate_config", "--server-name", "localhost", "--out", str(tmp_path / "dagma.yaml"), cwd=tmp_path
    )
    config = yaml.safe_load((tmp_path / "dagma.yaml").read_text())
    config["listeners"] = [
        {"port": 18009, "bind_addresses": ["0.0.0.0"], "resources": [{"names": ["admin"]}]}
    ]
    (tmp_path / "dagma.yaml").write_text(yaml.safe_dump(config))
    result = _manage("serve", "politburo", cwd=tmp_path)
    assert result.returncode != 0
    assert "admin resource must only bind to 127.0.0.1" in result.stderr


def test_serve_of_a_single_server_needs_an_existing_config(tmp_path: Path) -> None:
    result = _manage("serve", "tribune", cwd=tmp_path)
    assert result.returncode != 0 and "generate_config" in result.stderr
    assert not (tmp_path / "dagma.yaml").exists()

"""``manage.py register_user``: the operator creates accounts, registration open or not."""

from __future__ import annotations

import getpass
import io
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dagcore.passwords import check_password
from dagcore.store import accounts as account_store

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("register_user", *args, stdout=out)
    return out.getvalue().strip()


def test_creates_the_user_from_a_password_file_and_prints_the_user_id(tmp_path: Path, settings) -> None:
    (tmp_path / "pw").write_text("s3cret password\nignored second line\n")
    assert _run("alice", "--password-file", str(tmp_path / "pw")) == f"@alice:{settings.SERVER_NAME}"
    user = account_store.get_user_by_localpart("alice")
    assert user is not None and not user.is_admin
    assert check_password("s3cret password", user.password_hash)
    assert user.displayname == "alice"


def test_admin_flag_and_password_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\n"))
    _run("root", "--admin", "--password-file", "-")
    user = account_store.get_user_by_localpart("root")
    assert user is not None and user.is_admin and check_password("from stdin", user.password_hash)


def test_prompts_twice_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    answers = iter(["typed twice", "typed twice"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    _run("carol")
    user = account_store.get_user_by_localpart("carol")
    assert user is not None and check_password("typed twice", user.password_hash)
    mismatched = iter(["one", "two"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(mismatched))
    with pytest.raises(CommandError, match="do not match"):
        _run("dave")
    assert account_store.get_user_by_localpart("dave") is None


def test_without_terminal_or_file_it_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="password-file"):
        _run("erin")
    assert account_store.get_user_by_localpart("erin") is None


@pytest.mark.parametrize(
    ("localpart", "message"),
    [
        ("Alice", "M_INVALID_USERNAME"),
        ("bad name", "M_INVALID_USERNAME"),
        ("@alice:localhost", "localpart only"),
    ],
)
def test_invalid_localparts_are_refused(tmp_path: Path, localpart: str, message: str) -> None:
    (tmp_path / "pw").write_text("pw\n")
    with pytest.raises(CommandError, match=message):
        _run(localpart, "--password-file", str(tmp_path / "pw"))
    assert account_store.count_users() == 0


def test_a_taken_localpart_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("pw\n")
    _run("frank", "--password-file", str(tmp_path / "pw"))
    with pytest.raises(CommandError, match="M_USER_IN_USE"):
        _run("frank", "--password-file", str(tmp_path / "pw"))
    (tmp_path / "empty").write_text("")
    with pytest.raises(CommandError, match="empty"):
        _run("grace", "--password-file", str(tmp_path / "empty"))

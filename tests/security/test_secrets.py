"""Class 10 — secrets and tokens: nothing secret is stored in the clear, every bad token is
a 401 with the right code, nobody speaks for another user, and password guessing is throttled."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.security.kit import assert_error
from tests.support.client import MatrixClient
from tests.support.live import LiveServer

PASSWORD = "correct horse battery"


def _login(base_url: str, user_id: str, password: str = PASSWORD, **extra: object) -> httpx.Response:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": password, **extra}  # fmt: skip
    return httpx.post(f"{base_url}/_matrix/client/v3/login", json=body)


def _rows_containing(db_name: str, needle: str) -> list[str]:
    """Names of the live server's tables with a row whose text form contains ``needle``."""
    found = []
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db_name}") as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]  # fmt: skip
        for table in tables:
            row = conn.execute(
                f'SELECT 1 FROM "{table}" t WHERE t::text LIKE %s LIMIT 1',  # names from pg_tables
                (f"%{needle}%",),
            ).fetchone()
            if row:
                found.append(table)
    return found


def test_tokens_and_passwords_are_never_stored_in_the_clear(dagma_server) -> None:
    password = f"pw-{secrets.token_hex(8)}"
    c = MatrixClient(dagma_server.base_url)
    r = c.post("/register", {"username": f"sec{secrets.token_hex(4)}", "password": password,
                             "auth": {"type": "m.login.dummy"}, "refresh_token": True}, auth=False)  # fmt: skip
    access, user_id = r.json["access_token"], r.json["user_id"]
    # (refresh tokens are only issued when access_token_lifetime is configured)
    refresh = r.json.get("refresh_token")
    second = _login(dagma_server.base_url, user_id, password).json()["access_token"]
    for secret in (access, refresh, second, password):
        if secret is None:
            continue
        assert _rows_containing(dagma_server.db_name, secret) == [], "a secret is stored in the clear"
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{dagma_server.db_name}") as conn:
        row = conn.execute("SELECT password_hash FROM users WHERE user_id = %s", (user_id,)).fetchone()
        assert row is not None
        (stored,) = row
        digests = conn.execute(
            "SELECT token_hash FROM access_tokens t JOIN users u ON u.id = t.user_id WHERE u.user_id = %s",
            (user_id,),
        ).fetchall()
    assert stored.startswith("$argon2id$")
    assert len(digests) == 2 and all(len(d[0]) == 64 for d in digests)
    # Control: the stored forms still work — the tokens authenticate and the password logs in.
    for token in (access, second):
        assert MatrixClient(dagma_server.base_url, token).get("/account/whoami").json["user_id"] == user_id
    assert _login(dagma_server.base_url, user_id, password).status_code == 200


def test_missing_malformed_and_tampered_tokens_are_refused(make_client, dagma_server) -> None:
    alice = make_client()
    token = alice.access_token
    assert token
    url = f"{dagma_server.base_url}/_matrix/client/v3/account/whoami"
    missing = [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwdw=="},
               {"Authorization": token}]  # fmt: skip
    for headers in missing:
        r = httpx.get(url, headers=headers)
        assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN", (headers, r.text)
    tampered = [token + "x", token[:-1], token[:-1] + ("a" if token[-1] != "a" else "b"), token.upper(),
                "syt_" + "A" * 40, "x" * 5000, "tok\x7fen", "é"]  # fmt: skip
    for bad in tampered:
        r = httpx.get(url, params={"access_token": bad})
        assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN", (bad[:20], r.text)
        if bad.isascii() and bad.isprintable():
            r = httpx.get(url, headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN", (bad[:20], r.text)
    # Control: the real token, in the header or (deprecated) the query string.
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).json()["user_id"] == alice.user_id
    assert httpx.get(url, params={"access_token": token}).json()["user_id"] == alice.user_id


def test_revoked_tokens_stop_working(make_client, dagma_server) -> None:
    alice = make_client()
    laptop = MatrixClient(
        dagma_server.base_url, _login(dagma_server.base_url, alice.user_id).json()["access_token"]
    )
    phone = MatrixClient(
        dagma_server.base_url, _login(dagma_server.base_url, alice.user_id).json()["access_token"]
    )
    laptop.post("/logout", {}, spec="/logout")
    assert_error(laptop.get("/account/whoami", expect=None), 401, "M_UNKNOWN_TOKEN")
    phone.get("/account/whoami", spec="/account/whoami")  # control: other sessions live on
    alice.post("/logout/all", {}, spec="/logout/all")
    for c in (alice, phone):
        r = c.get("/account/whoami", expect=None)
        assert_error(r, 401, "M_UNKNOWN_TOKEN")
        assert r.json.get("soft_logout") is False


def test_a_deactivated_accounts_tokens_are_refused(make_client, dagma_server) -> None:
    bob = make_client()
    other = MatrixClient(
        dagma_server.base_url, _login(dagma_server.base_url, bob.user_id).json()["access_token"]
    )
    uia = {
        "type": "m.login.password",
        "password": PASSWORD,
        "identifier": {"type": "m.id.user", "user": bob.user_id},
    }
    r = bob.post("/account/deactivate", {"auth": uia}, expect=None)
    if r.status == 401:
        bob.post("/account/deactivate", {"auth": {**uia, "session": r.json["session"]}})
    assert_error(other.get("/account/whoami", expect=None), 401, "M_UNKNOWN_TOKEN")
    assert _login(dagma_server.base_url, bob.user_id).status_code == 403


def test_only_appservices_may_masquerade_with_user_id(make_client) -> None:
    alice, mallory = make_client(), make_client()
    for path in ("/account/whoami", "/joined_rooms", "/devices"):
        assert_error(mallory.get(path, params={"user_id": alice.user_id}, expect=None), 403, "M_FORBIDDEN")
    r = mallory.post("/createRoom", {}, params={"user_id": alice.user_id}, expect=None)
    assert_error(r, 403, "M_FORBIDDEN")
    assert alice.get("/joined_rooms").json["joined_rooms"] == []
    assert (
        mallory.get("/account/whoami", params={"user_id": mallory.user_id}).json["user_id"] == mallory.user_id
    )


@pytest.fixture(scope="module")
def throttled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Real login limits: three failed attempts per account, then about one per five seconds."""
    limits = {
        "address": {"per_second": 100, "burst_count": 1000},
        "account": {"per_second": 100, "burst_count": 1000},
        "failed_attempts": {"per_second": 0.2, "burst_count": 3},
    }
    server = LiveServer(
        tmp_path_factory.mktemp("throttled"), config={"rc_login": limits, "access_token_lifetime": "5m"}
    )
    server.start()
    yield server
    server.destroy()


def test_password_guessing_is_throttled_with_retry_after(throttled_server: LiveServer) -> None:
    base = throttled_server.base_url
    victim = MatrixClient(base).register(f"victim{secrets.token_hex(3)}")
    bystander = MatrixClient(base).register(f"bystander{secrets.token_hex(3)}")
    statuses = []
    for i in range(8):
        r = _login(base, victim.user_id or "", f"guess{i}")
        statuses.append(r.status_code)
        if r.status_code == 429:
            body = r.json()
            assert body["errcode"] == "M_LIMIT_EXCEEDED"
            assert isinstance(body["retry_after_ms"], int) and body["retry_after_ms"] > 0
    assert statuses[0] == 403 and 429 in statuses, statuses
    # While throttled even the right password is refused: guessing cannot be confirmed.
    assert _login(base, victim.user_id or "").status_code == 429
    # Control: another account is not affected.
    assert _login(base, bystander.user_id or "").status_code == 200
    victim.close()
    bystander.close()


def test_refresh_tokens_are_stored_hashed_and_spent_by_their_first_use(throttled_server: LiveServer) -> None:
    base = throttled_server.base_url
    c = MatrixClient(base)
    r = c.post("/register", {"username": f"ref{secrets.token_hex(4)}", "password": PASSWORD,
                             "auth": {"type": "m.login.dummy"}, "refresh_token": True}, auth=False)  # fmt: skip
    refresh = r.json["refresh_token"]
    assert _rows_containing(throttled_server.db_name, refresh) == []
    assert _rows_containing(throttled_server.db_name, r.json["access_token"]) == []
    renewed = c.post("/refresh", {"refresh_token": refresh}, auth=False, spec="/refresh").json
    assert _rows_containing(throttled_server.db_name, renewed["refresh_token"]) == []
    # A spent or tampered refresh token is refused.
    for bad in (refresh, renewed["refresh_token"] + "x"):
        r = c.post("/refresh", {"refresh_token": bad}, auth=False, expect=None)
        assert_error(r, 401, "M_UNKNOWN_TOKEN")
    # Control: the new access token works.
    assert MatrixClient(base, renewed["access_token"]).get("/account/whoami").status == 200

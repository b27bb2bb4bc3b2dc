"""Registration, login, logout, refresh, password change and deactivation against live servers.

Spec: client-server API "Client Authentication", "User-Interactive Authentication API",
"Account registration and management".
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.support.client import MatrixClient, q
from tests.support.live import REDIS_URL, LiveServer, advance_clock

PASSWORD = "correct horse battery"


def _name(prefix: str = "u") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def _password_auth(
    client: MatrixClient, password: str = PASSWORD, session: str | None = None
) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": client.user_id},
        "password": password,
    }
    if session is not None:
        auth["session"] = session
    return auth


def _login(base_url: str, user: str, password: str = PASSWORD, **extra: Any) -> MatrixClient:
    client = MatrixClient(base_url)
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    }
    r = client.post("/login", {**body, **extra}, auth=False, spec="/login")
    client.access_token = r.json["access_token"]
    client.user_id = r.json["user_id"]
    client.device_id = r.json["device_id"]
    return client


def _username_refusals(client: MatrixClient, username: str) -> dict[str, str]:
    """The errcodes of ``POST /register`` and ``GET /register/available`` for ``username``,
    each of which must answer 400."""
    r = client.post(
        "/register", {"username": username, "password": PASSWORD}, auth=False, expect=400, spec="/register"
    )
    available = client.get(
        "/register/available",
        params={"username": username},
        auth=False,
        expect=400,
        spec="/register/available",
    )
    return {"register": r.json["errcode"], "available": available.json["errcode"]}


def _start(tmp_path_factory: pytest.TempPathFactory, name: str, config: dict[str, Any]) -> LiveServer:
    return LiveServer(tmp_path_factory.mktemp(name), config=config).start()


@pytest.fixture(scope="module")
def closed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = _start(tmp_path_factory, "closed", {"enable_registration": False, "allow_guest_access": True})
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = _start(
        tmp_path_factory, "tokens",
        {"enable_registration_without_verification": False, "registration_requires_token": True},
    )  # fmt: skip
    yield server
    server.destroy()


LIFETIME_MS = 600_000  # refresh_server's access_token_lifetime


@pytest.fixture(scope="module")
def refresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = _start(tmp_path_factory, "refresh", {"access_token_lifetime": "10m"})
    yield server
    server.destroy()


# --------------------------------------------------------------------------- registration


def test_register_with_dummy_auth_in_the_first_request_logs_in(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    name = _name()
    r = c.post(
        "/register", {"username": name, "password": PASSWORD, "auth": {"type": "m.login.dummy"}},
        auth=False, spec="/register",
    )  # fmt: skip
    assert r.json["user_id"] == f"@{name}:localhost"
    c.access_token = r.json["access_token"]
    me = c.get("/account/whoami", spec="/account/whoami").json
    assert me == {"user_id": f"@{name}:localhost", "device_id": r.json["device_id"], "is_guest": False}


def test_register_round_trip_401_then_dummy_with_the_session(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    body = {"username": _name(), "password": PASSWORD, "initial_device_display_name": "Jungle Phone"}
    first = c.post("/register", body, auth=False, expect=401, spec="/register")
    assert first.json["flows"] == [{"stages": ["m.login.dummy"]}]
    assert first.json["params"] == {}
    assert "errcode" not in first.json
    session = first.json["session"]
    done = c.post(
        "/register",
        {**body, "auth": {"type": "m.login.dummy", "session": session}},
        auth=False,
        spec="/register",
    )
    c.access_token = done.json["access_token"]
    devices = c.get("/devices", spec="/devices").json["devices"]
    assert devices[0]["display_name"] == "Jungle Phone"
    # A session authorises one registration only: spent, it is unknown.
    again = c.post(
        "/register", {**body, "username": _name(), "auth": {"type": "m.login.dummy", "session": session}},
        auth=False, expect=400,
    )  # fmt: skip
    assert again.json["errcode"] == "M_UNKNOWN"


def test_register_session_is_bound_to_the_endpoint_it_started_on(dagma_server, make_client) -> None:
    c = MatrixClient(dagma_server.base_url)
    session = c.post("/register", {"username": _name()}, auth=False, expect=401).json["session"]
    alice = make_client()
    # The registration session cannot authorise a device deletion...
    wrong = alice.post(
        "/delete_devices",
        {"devices": ["X"], "auth": {"type": "m.login.dummy", "session": session}},
        expect=403,
    )
    assert wrong.json["errcode"] == "M_FORBIDDEN"
    # ...but still completes the registration it was started for.
    c.post(
        "/register", {"username": _name(), "password": PASSWORD, "auth": {"type": "m.login.dummy", "session": session}},
        auth=False, spec="/register",
    )  # fmt: skip


def test_register_with_an_unoffered_stage_is_401_with_the_flows(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    body = {"username": _name(), "password": PASSWORD}
    r = c.post(
        "/register",
        {**body, "auth": {"type": "m.login.recaptcha", "response": "x"}},
        auth=False,
        expect=401,
        spec="/register",
    )
    assert r.json["errcode"] == "M_UNRECOGNIZED"
    assert r.json["flows"] == [{"stages": ["m.login.dummy"]}]
    ok = c.post(
        "/register", {**body, "auth": {"type": "m.login.dummy", "session": r.json["session"]}}, auth=False
    )
    assert ok.json["user_id"].startswith("@")


@pytest.mark.parametrize(
    "username",
    ["Alice", "al ice", "al:ice", "al#ice", "élodie", "a" * 250, ""],
    ids=["uppercase", "space", "colon", "hash", "non-ascii", "too-long", "empty"],
)
def test_register_refuses_invalid_usernames_before_auth(dagma_server, username: str) -> None:
    refused = _username_refusals(MatrixClient(dagma_server.base_url), username)
    assert refused == {"register": "M_INVALID_USERNAME", "available": "M_INVALID_USERNAME"}


def test_register_never_lower_cases_a_username(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    name = _name("bob")
    c.post(
        "/register",
        {"username": name.upper(), "password": PASSWORD, "auth": {"type": "m.login.dummy"}},
        auth=False,
        expect=400,
    )
    # Nothing was created under the lower-cased name.
    assert c.get(
        "/register/available", params={"username": name}, auth=False, spec="/register/available"
    ).json == {"available": True}
    longest = "a" * (255 - len("@:localhost"))
    assert c.get("/register/available", params={"username": longest}, auth=False).json["available"] is True


def test_register_taken_username_is_m_user_in_use(dagma_server, make_client) -> None:
    alice = make_client()
    localpart = alice.user_id[1:].split(":")[0]
    refused = _username_refusals(MatrixClient(dagma_server.base_url), localpart)
    assert refused == {"register": "M_USER_IN_USE", "available": "M_USER_IN_USE"}


def test_register_without_username_picks_a_valid_random_user_id(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    a = c.post(
        "/register", {"password": PASSWORD, "auth": {"type": "m.login.dummy"}}, auth=False, spec="/register"
    ).json
    b = c.post("/register", {"password": PASSWORD, "auth": {"type": "m.login.dummy"}}, auth=False).json
    assert a["user_id"] != b["user_id"]
    localpart = a["user_id"][1:].split(":")[0]
    assert localpart and all(ch in "abcdefghijklmnopqrstuvwxyz0123456789._=-/+" for ch in localpart)


def test_register_inhibit_login_returns_no_token_but_the_account_works(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    name = _name()
    r = c.post(
        "/register", {"username": name, "password": PASSWORD, "inhibit_login": True, "auth": {"type": "m.login.dummy"}},
        auth=False, spec="/register",
    )  # fmt: skip
    assert "access_token" not in r.json and "device_id" not in r.json
    assert _login(dagma_server.base_url, name).user_id == f"@{name}:localhost"


def test_register_with_device_id_uses_it(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    r = c.post(
        "/register",
        {"username": _name(), "password": PASSWORD, "device_id": "MYDEVICE", "auth": {"type": "m.login.dummy"}},
        auth=False, spec="/register",
    )  # fmt: skip
    assert r.json["device_id"] == "MYDEVICE"


def test_register_without_password_is_refused_after_auth_and_the_session_survives(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    name = _name()
    r = c.post("/register", {"username": name, "auth": {"type": "m.login.dummy"}}, auth=False, expect=400)
    assert r.json["errcode"] == "M_MISSING_PARAM"
    first = c.post("/register", {"username": name}, auth=False, expect=401)
    ok = c.post(
        "/register", {"username": name, "password": PASSWORD, "auth": {"session": first.json["session"], "type": "m.login.dummy"}},
        auth=False,
    )  # fmt: skip
    assert ok.json["user_id"] == f"@{name}:localhost"


def test_guest_registration_is_refused_unless_allowed(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    r = c.post("/register", {}, params={"kind": "guest"}, auth=False, expect=403, spec="/register")
    assert r.json["errcode"] == "M_FORBIDDEN"
    bad = c.post("/register", {}, params={"kind": "robot"}, auth=False, expect=400)
    assert bad.json["errcode"] == "M_INVALID_PARAM"


def test_guest_registration_works_when_allowed_even_with_registration_closed(closed_server) -> None:
    c = MatrixClient(closed_server.base_url)
    r = c.post(
        "/register", {"username": "ignored", "password": "ignored", "initial_device_display_name": "Guest tab"},
        params={"kind": "guest"}, auth=False, spec="/register",
    )  # fmt: skip
    assert not r.json["user_id"].startswith("@ignored:")
    c.access_token = r.json["access_token"]
    assert c.get("/account/whoami", spec="/account/whoami").json["is_guest"] is True
    # Guests have no password to change and no devices to manage.
    assert (
        c.post("/account/password", {"new_password": "x"}, expect=403).json["errcode"]
        == "M_GUEST_ACCESS_FORBIDDEN"
    )
    assert c.get("/devices", expect=403).json["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


def test_registration_disabled_answers_403_but_register_user_still_works(closed_server) -> None:
    c = MatrixClient(closed_server.base_url)
    r = c.post(
        "/register", {"username": "mallory", "password": PASSWORD, "auth": {"type": "m.login.dummy"}},
        auth=False, expect=403, spec="/register",
    )  # fmt: skip
    assert r.json["errcode"] == "M_FORBIDDEN"
    c.post("/register", {}, auth=False, expect=403)
    assert (
        c.get("/register/available", params={"username": "mallory"}, auth=False, expect=403).json["errcode"]
        == "M_FORBIDDEN"
    )
    # The operator can still create accounts.
    made = closed_server.manage(
        "register_user", "alice", "--password-file", "-", input=f"{PASSWORD}\n".encode()
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.decode().strip() == "@alice:localhost"
    assert _login(closed_server.base_url, "alice").user_id == "@alice:localhost"


# --------------------------------------------------------------------------- registration tokens


def _make_token(server: LiveServer, token: str, uses_allowed: int | None) -> None:
    code = (
        "from dagcore.store.uia import create_registration_token; "
        f"create_registration_token(token={token!r}, uses_allowed={uses_allowed!r})"
    )
    made = server.manage("shell", "-c", code)
    assert made.returncode == 0, made.stderr


def test_token_registration_offers_only_the_token_stage(token_server) -> None:
    c = MatrixClient(token_server.base_url)
    r = c.post(
        "/register", {"username": _name(), "password": PASSWORD}, auth=False, expect=401, spec="/register"
    )
    assert r.json["flows"] == [{"stages": ["m.login.registration_token"]}]
    dummy = c.post(
        "/register", {"username": _name(), "password": PASSWORD, "auth": {"type": "m.login.dummy", "session": r.json["session"]}},
        auth=False, expect=401,
    )  # fmt: skip
    assert dummy.json["errcode"] == "M_UNRECOGNIZED"


def test_token_registration_counts_uses_and_refuses_spent_tokens(token_server) -> None:
    token = "tok" + secrets.token_hex(4)
    _make_token(token_server, token, 1)
    c = MatrixClient(token_server.base_url)
    validity = "/_matrix/client/v1/register/m.login.registration_token/validity"
    spec = "/register/m.login.registration_token/validity"
    assert c.get(validity, params={"token": token}, auth=False, spec=spec).json == {"valid": True}
    assert c.get(validity, params={"token": "nope"}, auth=False, spec=spec).json == {"valid": False}

    body = {"username": _name(), "password": PASSWORD}
    session = c.post("/register", body, auth=False, expect=401).json["session"]
    wrong = c.post(
        "/register", {**body, "auth": {"type": "m.login.registration_token", "token": "nope", "session": session}},
        auth=False, expect=401, spec="/register",
    )  # fmt: skip
    assert wrong.json["errcode"] == "M_FORBIDDEN"
    assert wrong.json["session"] == session
    ok = c.post(
        "/register", {**body, "auth": {"type": "m.login.registration_token", "token": token, "session": session}},
        auth=False, spec="/register",
    )  # fmt: skip
    assert ok.json["user_id"] == f"@{body['username']}:localhost"
    # Its one use is spent.
    assert c.get(validity, params={"token": token}, auth=False).json == {"valid": False}
    spent = c.post(
        "/register", {"username": _name(), "password": PASSWORD, "auth": {"type": "m.login.registration_token", "token": token}},
        auth=False, expect=401,
    )  # fmt: skip
    assert spent.json["errcode"] == "M_FORBIDDEN"


def test_a_token_stage_in_progress_holds_the_last_use(token_server) -> None:
    token = "tok" + secrets.token_hex(4)
    _make_token(token_server, token, 1)
    c = MatrixClient(token_server.base_url)
    # Passing the token stage without finishing (no password yet) reserves the use...
    first = c.post(
        "/register", {"username": _name(), "auth": {"type": "m.login.registration_token", "token": token}},
        auth=False, expect=400,
    )  # fmt: skip
    assert first.json["errcode"] == "M_MISSING_PARAM"
    other = c.post(
        "/register", {"username": _name(), "password": PASSWORD, "auth": {"type": "m.login.registration_token", "token": token}},
        auth=False, expect=401,
    )  # fmt: skip
    assert other.json["errcode"] == "M_FORBIDDEN"


def test_token_validity_is_403_when_registration_is_closed(closed_server) -> None:
    c = MatrixClient(closed_server.base_url)
    r = c.get(
        "/_matrix/client/v1/register/m.login.registration_token/validity", params={"token": "abc"}, auth=False,
        expect=403, spec="/register/m.login.registration_token/validity",
    )  # fmt: skip
    assert r.json["errcode"] == "M_FORBIDDEN"


# --------------------------------------------------------------------------- login


def test_login_flows_offer_password(dagma_server) -> None:
    r = MatrixClient(dagma_server.base_url).get("/login", auth=False, spec="/login")
    assert {"type": "m.login.password"} in r.json["flows"]
    assert {"type": "m.login.token", "get_login_token": True} in r.json["flows"]


def test_a_login_token_signs_in_a_new_device_once_and_needs_the_password_to_get(
    dagma_server, make_client
) -> None:
    alice = make_client()
    caps = alice.get("/capabilities", spec="/capabilities").json["capabilities"]
    assert caps["m.get_login_token"] == {"enabled": True}
    get_token = "/_matrix/client/v1/login/get_token"
    first = alice.post(get_token, {}, expect=401, spec="/login/get_token")
    assert first.json["flows"] == [{"stages": ["m.login.password"]}]
    wrong = alice.post(get_token, {"auth": _password_auth(alice, "nope", first.json["session"])}, expect=401)
    assert wrong.json["errcode"] == "M_FORBIDDEN"
    issued = alice.post(
        get_token, {"auth": _password_auth(alice, session=first.json["session"])}, spec="/login/get_token"
    )
    assert issued.json["expires_in_ms"] == 120_000

    new_device = MatrixClient(dagma_server.base_url)
    body = {"type": "m.login.token", "token": issued.json["login_token"], "initial_device_display_name": "QR"}
    login = new_device.post("/login", body, auth=False, spec="/login")
    assert login.json["user_id"] == alice.user_id and login.json["device_id"] != alice.device_id
    new_device.access_token = login.json["access_token"]
    assert new_device.get("/account/whoami").json["user_id"] == alice.user_id
    # single use
    again = MatrixClient(dagma_server.base_url).post("/login", body, auth=False, expect=403, spec="/login")
    assert again.json["errcode"] == "M_FORBIDDEN"
    forged = {"type": "m.login.token", "token": "dgm_lt_forged"}
    assert (
        MatrixClient(dagma_server.base_url).post("/login", forged, auth=False, expect=403).json["errcode"]
        == "M_FORBIDDEN"
    )
    missing = MatrixClient(dagma_server.base_url).post(
        "/login", {"type": "m.login.token"}, auth=False, expect=400
    )
    assert missing.json["errcode"] == "M_MISSING_PARAM"


def test_login_by_localpart_full_user_id_and_legacy_user_field(dagma_server, make_client) -> None:
    alice = make_client()
    localpart = alice.user_id[1:].split(":")[0]
    by_localpart = _login(dagma_server.base_url, localpart)
    by_full_id = _login(dagma_server.base_url, alice.user_id)
    assert by_localpart.user_id == by_full_id.user_id == alice.user_id
    assert by_localpart.device_id != by_full_id.device_id
    c = MatrixClient(dagma_server.base_url)
    legacy = c.post(
        "/login",
        {"type": "m.login.password", "user": localpart, "password": PASSWORD},
        auth=False,
        spec="/login",
    )
    assert legacy.json["user_id"] == alice.user_id
    # Localparts are lower case: a capitalised login name still finds the account.
    assert _login(dagma_server.base_url, localpart.capitalize()).user_id == alice.user_id


def test_login_with_wrong_password_or_unknown_user_is_403(dagma_server, make_client) -> None:
    alice = make_client()
    c = MatrixClient(dagma_server.base_url)
    for user, password in (
        (alice.user_id, "wrong"),
        ("nobody" + secrets.token_hex(3), PASSWORD),
        ("@x:elsewhere.org", PASSWORD),
    ):
        r = c.post(
            "/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password},
            auth=False, expect=403, spec="/login",
        )  # fmt: skip
        assert r.json["errcode"] == "M_FORBIDDEN"
    assert _login(dagma_server.base_url, alice.user_id).access_token


def test_login_with_unknown_type_or_identifier_is_400(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    r = c.post("/login", {"type": "m.login.magic"}, auth=False, expect=400, spec="/login")
    assert r.json["errcode"] == "M_UNKNOWN"
    r = c.post(
        "/login", {"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"},
                   "password": "x"},
        auth=False, expect=400,
    )  # fmt: skip
    assert r.json["errcode"] == "M_UNKNOWN"
    r = c.post("/login", {"type": "m.login.password", "password": "x"}, auth=False, expect=400)
    assert r.json["errcode"] == "M_MISSING_PARAM"


def test_login_with_a_known_device_id_reuses_the_device(dagma_server, make_client) -> None:
    alice = make_client()
    again = _login(dagma_server.base_url, alice.user_id, device_id=alice.device_id)
    assert again.device_id == alice.device_id
    assert len(alice.get("/devices").json["devices"]) == 1
    new = _login(
        dagma_server.base_url, alice.user_id, device_id="BRANDNEW", initial_device_display_name="Tablet"
    )
    assert new.get(f"/devices/{q('BRANDNEW')}", spec="/devices/{deviceId}").json["display_name"] == "Tablet"


def _full_buckets() -> None:
    """Buckets live in Redis and outlive requests: start each rate-limit test from full ones.

    (Keys are prefixed per homeserver, ``<prefix>:rl:...``, so other servers' buckets are
    never shared; this only resets the buckets earlier tests of this module spent.)
    """
    r = redis.Redis.from_url(REDIS_URL)
    for key in r.scan_iter("*:rl:*"):
        r.delete(key)


@pytest.fixture(scope="module")
def tight_login_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = _start(
        tmp_path_factory, "ratelimit",
        {"rc_login": {"address": {"per_second": 0.001, "burst_count": 6},
                      "account": {"per_second": 1000, "burst_count": 10000},
                      "failed_attempts": {"per_second": 0.001, "burst_count": 2}},
         "rc_registration": {"per_second": 0.001, "burst_count": 3}},
    )  # fmt: skip
    yield server
    server.destroy()


def test_login_rate_limits_failed_attempts_per_account_and_attempts_per_address(tight_login_server) -> None:
    _full_buckets()
    base = tight_login_server.base_url
    alice, bob = MatrixClient(base).register(_name()), MatrixClient(base).register(_name())
    c = MatrixClient(base)

    def attempt(user: str | None, password: str, expect: int) -> Any:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        }
        return c.post("/login", body, auth=False, expect=expect, spec="/login").json

    attempt(alice.user_id, "wrong", 403)
    attempt(alice.user_id, "wrong", 403)
    limited = attempt(alice.user_id, "wrong", 429)
    assert limited["errcode"] == "M_LIMIT_EXCEEDED" and limited["retry_after_ms"] > 0
    # Out of failed attempts, even the right password is refused: guessing stops here.
    attempt(alice.user_id, PASSWORD, 429)
    # Another account from the same address is unaffected...
    attempt(bob.user_id, PASSWORD, 200)
    attempt(bob.user_id, PASSWORD, 200)
    # ...until the address has used its attempts.
    assert attempt(bob.user_id, PASSWORD, 429)["errcode"] == "M_LIMIT_EXCEEDED"


def test_registration_is_rate_limited_per_address_but_uia_round_trips_are_free(tight_login_server) -> None:
    _full_buckets()
    c = MatrixClient(tight_login_server.base_url)
    for _ in range(5):  # flows and sessions cost nothing...
        c.post("/register", {"username": _name()}, auth=False, expect=401)
    for _ in range(3):  # ...registrations do
        c.post(
            "/register",
            {"username": _name(), "password": PASSWORD, "auth": {"type": "m.login.dummy"}},
            auth=False,
        )
    limited = c.post(
        "/register", {"username": _name(), "password": PASSWORD, "auth": {"type": "m.login.dummy"}},
        auth=False, expect=429, spec="/register",
    )  # fmt: skip
    assert limited.json["errcode"] == "M_LIMIT_EXCEEDED" and limited.json["retry_after_ms"] > 0


# --------------------------------------------------------------------------- logout, refresh


def test_logout_kills_the_token_and_device_at_once_but_not_other_sessions(dagma_server, make_client) -> None:
    alice = make_client()
    other = _login(dagma_server.base_url, alice.user_id)
    alice.post("/logout", spec="/logout")
    gone = alice.get("/account/whoami", expect=401)
    assert gone.json["errcode"] == "M_UNKNOWN_TOKEN"
    assert other.get("/account/whoami").json["device_id"] == other.device_id
    assert [d["device_id"] for d in other.get("/devices").json["devices"]] == [other.device_id]


def test_logout_all_kills_every_token(dagma_server, make_client) -> None:
    alice = make_client()
    other = _login(dagma_server.base_url, alice.user_id)
    bob = make_client()
    alice.post("/logout/all", spec="/logout/all")
    for c in (alice, other):
        assert c.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"
    bob.get("/account/whoami")
    assert _login(dagma_server.base_url, alice.user_id).get("/devices").json["devices"].__len__() == 1


def _set_locked(server: LiveServer, user_id: str, locked: bool) -> None:
    """As the admin API's ``PUT /_synapse/admin/v2/users/<id> {"locked": ...}`` leaves the row."""
    assert server.query(
        "UPDATE users SET locked = %s WHERE user_id = %s RETURNING user_id", (locked, user_id)
    )


def test_a_locked_account_is_refused_everywhere_but_may_still_log_out(dagma_server, make_client) -> None:
    """Spec "Account locking" (v1.12): 401 ``M_USER_LOCKED`` with ``soft_logout`` on every
    authenticated endpoint, except ``/logout`` and ``/logout/all``, which still work."""
    alice = make_client()
    other = _login(dagma_server.base_url, alice.user_id)
    _set_locked(dagma_server, alice.user_id, True)
    refused = alice.get("/account/whoami", expect=401).json
    assert refused["errcode"] == "M_USER_LOCKED" and refused["soft_logout"] is True
    assert alice.get("/joined_rooms", expect=401).json["errcode"] == "M_USER_LOCKED"
    alice.post("/logout", spec="/logout")
    assert alice.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"
    assert other.get("/devices", expect=401).json["errcode"] == "M_USER_LOCKED"
    other.post("/logout/all", spec="/logout/all")
    assert other.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"
    # Unlocked, the account logs in again.
    _set_locked(dagma_server, alice.user_id, False)
    assert (
        _login(dagma_server.base_url, alice.user_id).get("/account/whoami").json["user_id"] == alice.user_id
    )


def test_refresh_token_is_not_issued_without_a_token_lifetime(dagma_server, make_client) -> None:
    alice = make_client()
    r = MatrixClient(dagma_server.base_url).post(
        "/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
                   "password": PASSWORD, "refresh_token": True},
        auth=False, spec="/login",
    )  # fmt: skip
    assert "refresh_token" not in r.json and "expires_in_ms" not in r.json


def test_refresh_rotates_tokens_and_refuses_a_used_refresh_token(refresh_server) -> None:
    base = refresh_server.base_url
    c = MatrixClient(base)
    name = _name()
    reg = c.post(
        "/register", {"username": name, "password": PASSWORD, "refresh_token": True, "auth": {"type": "m.login.dummy"}},
        auth=False, spec="/register",
    ).json  # fmt: skip
    assert reg["expires_in_ms"] == LIFETIME_MS and reg["refresh_token"]
    c.access_token = reg["access_token"]
    c.get("/account/whoami")
    new = c.post("/refresh", {"refresh_token": reg["refresh_token"]}, auth=False, spec="/refresh").json
    assert new["access_token"] != reg["access_token"] and new["refresh_token"] != reg["refresh_token"]
    assert new["expires_in_ms"] == LIFETIME_MS
    # The old access token is revoked at once; the new one works.
    assert c.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"
    c.access_token = new["access_token"]
    assert c.get("/account/whoami").json["device_id"] == reg["device_id"]
    # A refresh token is spent by its first use.
    reused = c.post(
        "/refresh", {"refresh_token": reg["refresh_token"]}, auth=False, expect=401, spec="/refresh"
    )
    assert reused.json["errcode"] == "M_UNKNOWN_TOKEN"
    c.post("/refresh", {"refresh_token": new["refresh_token"]}, auth=False, spec="/refresh")


def test_expired_access_token_is_a_soft_logout_until_refreshed(refresh_server) -> None:
    base = refresh_server.base_url
    MatrixClient(base).register(name := _name())
    login = MatrixClient(base).post(
        "/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name}, "password": PASSWORD,
                   "refresh_token": True},
        auth=False, spec="/login",
    ).json  # fmt: skip
    c = MatrixClient(base, login["access_token"])
    c.get("/account/whoami")
    # The server's clock moves instead of the test sleeping: a minute before the end of the
    # token's lifetime it still works, a second after the end it has expired.
    advance_clock(base, LIFETIME_MS - 60_000)
    assert c.get("/account/whoami").json["user_id"] == login["user_id"]
    advance_clock(base, 61_000)
    expired = c.get("/account/whoami", expect=401)
    assert expired.json == {
        "errcode": "M_UNKNOWN_TOKEN",
        "error": "Access token has expired",
        "soft_logout": True,
    }
    refreshed = c.post("/refresh", {"refresh_token": login["refresh_token"]}, auth=False).json
    assert refreshed["expires_in_ms"] == LIFETIME_MS
    c.access_token = refreshed["access_token"]
    assert c.get("/account/whoami").json["user_id"] == login["user_id"]


# --------------------------------------------------------------------------- password, deactivation


def test_password_change_needs_the_old_password_and_logs_out_other_devices(dagma_server, make_client) -> None:
    alice = make_client()
    other = _login(dagma_server.base_url, alice.user_id)
    body = {"new_password": "a brand new password"}
    first = alice.post("/account/password", body, expect=401, spec="/account/password")
    assert first.json["flows"] == [{"stages": ["m.login.password"]}]
    session = first.json["session"]
    wrong = alice.post(
        "/account/password",
        {**body, "auth": _password_auth(alice, "not it", session)},
        expect=401,
        spec="/account/password",
    )
    assert wrong.json["errcode"] == "M_FORBIDDEN" and wrong.json["session"] == session
    other.get("/account/whoami")
    alice.post(
        "/account/password",
        {**body, "auth": _password_auth(alice, PASSWORD, session)},
        spec="/account/password",
    )
    # This device stays logged in; the other one is logged out with its device.
    alice.get("/account/whoami")
    assert other.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"
    assert [d["device_id"] for d in alice.get("/devices").json["devices"]] == [alice.device_id]
    c = MatrixClient(dagma_server.base_url)
    c.post(
        "/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id}, "password": PASSWORD},
        auth=False, expect=403,
    )  # fmt: skip
    _login(dagma_server.base_url, alice.user_id, "a brand new password")


def test_password_change_can_keep_other_devices(dagma_server, make_client) -> None:
    alice = make_client()
    other = _login(dagma_server.base_url, alice.user_id)
    alice.post(
        "/account/password", {"new_password": "another one", "logout_devices": False, "auth": _password_auth(alice)},
        spec="/account/password",
    )  # fmt: skip
    # The password did change ...
    old = MatrixClient(dagma_server.base_url).post(
        "/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
                   "password": PASSWORD},
        auth=False, expect=403,
    )  # fmt: skip
    assert old.json["errcode"] == "M_FORBIDDEN"
    _login(dagma_server.base_url, alice.user_id, "another one")
    # ... and the other device kept its session and its device.
    assert other.get("/account/whoami").json["device_id"] == other.device_id
    assert other.device_id in [d["device_id"] for d in alice.get("/devices").json["devices"]]


def test_password_auth_for_someone_else_is_refused(dagma_server, make_client) -> None:
    alice, bob = make_client(), make_client()
    r = alice.post("/account/password", {"new_password": "x" * 10, "auth": _password_auth(bob)}, expect=401)
    assert r.json["errcode"] == "M_FORBIDDEN"
    _login(dagma_server.base_url, alice.user_id)


def test_deactivation_needs_the_password_then_closes_the_account_for_good(dagma_server, make_client) -> None:
    alice = make_client()
    name = alice.user_id[1:].split(":")[0]
    r = alice.post(
        "/account/deactivate",
        {"auth": _password_auth(alice, "wrong")},
        expect=401,
        spec="/account/deactivate",
    )
    assert r.json["errcode"] == "M_FORBIDDEN"
    alice.get("/account/whoami")
    done = alice.post(
        "/account/deactivate",
        {"auth": _password_auth(alice, PASSWORD, r.json["session"])},
        spec="/account/deactivate",
    )
    assert done.json == {"id_server_unbind_result": "no-support"}
    assert alice.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"
    c = MatrixClient(dagma_server.base_url)
    c.post(
        "/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name}, "password": PASSWORD},
        auth=False, expect=403,
    )  # fmt: skip
    # The user ID is never handed out again, and the profile is gone.
    assert (
        c.get("/register/available", params={"username": name}, auth=False, expect=400).json["errcode"]
        == "M_USER_IN_USE"
    )
    assert c.get(f"/profile/{q(alice.user_id)}", auth=False, expect=404).json["errcode"] == "M_NOT_FOUND"


def test_whoami_without_or_with_a_bad_token(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    assert c.get("/account/whoami", expect=401, spec="/account/whoami").json["errcode"] == "M_MISSING_TOKEN"
    c.access_token = "dgm_at_nonsense"
    assert c.get("/account/whoami", expect=401, spec="/account/whoami").json["errcode"] == "M_UNKNOWN_TOKEN"


# --------------------------------------------------------------------------- in-process: hot path and maintenance


@pytest.mark.django_db
def test_token_lookup_is_one_query_and_last_seen_is_written_at_most_once_a_minute(
    django_assert_num_queries,
) -> None:
    from dagcore.actions.accounts import do_register_user, do_start_login_session
    from dagcore.store import accounts as account_store

    user = do_register_user(localpart="hot", password=PASSWORD)
    session = do_start_login_session(
        user=user, device_id=None, initial_display_name=None, want_refresh_token=False
    )
    with django_assert_num_queries(1):
        owner = account_store.get_token_owner(session.access_token)
        assert owner is not None and owner.device is not None
        account_store.touch_device(owner.device, ip="10.0.0.1", user_agent="test")  # seen at login: no write
    assert owner.device.last_seen_ip is None  # as recorded at login (no address given)
    owner.device.last_seen_ts = 0  # long ago
    with django_assert_num_queries(1):
        account_store.touch_device(owner.device, ip="10.0.0.1", user_agent="test")
    assert account_store.get_device(user, session.device_id).last_seen_ip == "10.0.0.1"  # type: ignore[union-attr]


@pytest.mark.django_db
def test_expired_uia_sessions_are_deleted_and_give_back_their_token_use() -> None:
    from dagcore.actions.maintenance import do_expire_uia_sessions
    from dagcore.models import UiaSession
    from dagcore.store import uia as uia_store

    uia_store.create_registration_token(token="once", uses_allowed=1)
    stale = uia_store.create_session(operation="POST /register", user_id=None, binding="")
    live = uia_store.create_session(operation="POST /register", user_id=None, binding="")
    assert uia_store.reserve_registration_token("once")
    UiaSession.objects.filter(id=stale.id).update(data={"registration_token": "once"}, expires_ts=1)
    assert not uia_store.is_registration_token_valid("once")  # held by the stale session
    assert do_expire_uia_sessions() == 1
    assert uia_store.get_session(live.session_id) is not None
    assert uia_store.get_session(stale.session_id) is None
    assert uia_store.is_registration_token_valid("once")
    assert do_expire_uia_sessions() == 0


def test_durations_parse_like_synapse() -> None:
    from dagcore.actions.accounts import parse_duration_ms

    assert parse_duration_ms("5m") == 300_000
    assert parse_duration_ms("1h") == 3_600_000
    assert parse_duration_ms("250ms") == 250
    assert parse_duration_ms("42") == 42
    with pytest.raises(ValueError):
        parse_duration_ms("five minutes")

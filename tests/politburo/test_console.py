"""The console's front door, in a real browser: login, CSRF, logout, who may come in, and
how Politburo answers strangers (foreign Host, the public servers, non-admin tokens)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pyotp
import redis

from tests.politburo.conftest import ADMIN, USER_PASSWORD, Console, ConsolePage, make_admin
from tests.support.client import MatrixClient
from tests.support.live import REDIS_URL, advance_clock


def test_an_admin_logs_in_and_out_and_a_post_without_csrf_token_is_refused(
    page: ConsolePage, console: Console
) -> None:
    # Not logged in: the dashboard sends the browser to the login form, which then comes back.
    page.goto("/")
    assert page.page.url.startswith(console.url("/login?next=%2F"))
    page.shot("login-form")

    page.page.fill("#user", ADMIN)
    page.page.fill("#password", "wrong password")
    page.page.click("#login-submit")
    assert "Wrong user name or password" in page.page.locator("#login-error").inner_text()
    page.shot("login-refused")

    page.login(ADMIN, console.admin_password)
    assert page.page.url == console.url("/")
    assert page.page.locator("#whoami").inner_text() == console.admin_user_id
    page.shot("dashboard")

    cookie = next(c for c in page.page.context.cookies() if c["name"] == "politburo_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    stored = console.server.query("SELECT secret_hash FROM console_sessions")
    assert stored and all(row[0] != cookie["value"] for row in stored)  # only a digest is kept

    # The session cookie alone does not make a POST: the form's CSRF token is required.
    forged = page.page.request.post(console.url("/logout"), form={"nothing": "here"})
    assert forged.status == 403
    forged = page.page.request.post(console.url("/logout"), form={"csrf_token": "0" * 64})
    assert forged.status == 403
    page.goto("/")
    assert page.page.locator("#whoami").is_visible()  # still logged in

    headers = page.page.request.get(console.url("/")).headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"

    page.page.click("#logout")
    page.page.wait_for_url(console.url("/login"))
    # The old cookie is dead on the server, not just dropped by the browser.
    r = httpx.get(console.url("/"), cookies={"politburo_session": cookie["value"]})
    assert r.status_code == 302 and r.headers["location"].startswith("/login")
    assert not console.server.query("SELECT 1 FROM console_sessions")
    assert page.errors == []


def test_an_ordinary_user_cannot_log_into_the_console(page: ConsolePage, console: Console) -> None:
    user = console.register()
    page.login(str(user.user_id), USER_PASSWORD)
    assert page.page.url.startswith(console.url("/login"))
    assert "not a server admin" in page.page.locator("#login-error").inner_text()


def test_politburo_answers_only_loopback_hosts_and_admin_tokens(console: Console) -> None:
    # DNS rebinding: a page elsewhere resolving its own name to 127.0.0.1 sends that name.
    for host in ("evil.example.com", "evil.example.com:8009", "127.0.0.1.evil.example.com"):
        r = httpx.get(console.url("/login"), headers={"Host": host})
        assert r.status_code == 400, host
        r = console.api("GET", "/_synapse/admin/v2/users", headers={"Host": host})
        assert r.status_code == 400, host
    for host in ("localhost", f"127.0.0.1:{console.politburo.port}", f"[::1]:{console.politburo.port}"):
        assert httpx.get(console.url("/login"), headers={"Host": host}).status_code == 200, host

    # The JSON API takes tokens only: Synapse's errors for a missing, unknown, non-admin token.
    r = console.api("GET", "/_synapse/admin/v2/users", token=None)
    assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")
    r = console.api("GET", "/_synapse/admin/v2/users", token="not-a-token")
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    user = console.register()
    r = console.api("GET", "/_synapse/admin/v2/users", token=user.access_token)
    assert (r.status_code, r.json()) == (
        403,
        {"errcode": "M_FORBIDDEN", "error": "You are not a server admin"},
    )
    # ... whatever the Accept header, and bad input is a Matrix error too.
    r = console.api("GET", "/_synapse/admin/v2/users", headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    r = console.api("GET", "/_synapse/admin/v2/users", params={"limit": "-1"})
    assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")
    r = console.api("PUT", f"/_synapse/admin/v2/users/@x:{console.server.server_name}", content=b"{nope")
    assert (r.status_code, r.json()["errcode"]) == (400, "M_NOT_JSON")

    # The console's pages and the admin API are Politburo's alone.
    for path in ("/login", "/_synapse/admin/v2/users", "/account"):
        r = httpx.get(
            console.server.base_url + path, headers={"Authorization": f"Bearer {console.admin_token}"}
        )
        assert r.status_code == 404, path


def test_creating_restricting_and_deactivating_a_user_in_the_console(
    admin_page: ConsolePage, console: Console
) -> None:
    page = admin_page.page
    admin_page.goto("/users")
    page.click("#new-user")
    page.fill("#localpart", "zoe")
    page.fill("#password", USER_PASSWORD)
    page.fill("#displayname", "Zoë")
    admin_page.shot("user-new")
    page.click("#create-submit")
    user_id = f"@zoe:{console.server.server_name}"
    assert page.locator(".notice").inner_text() == f"Created {user_id}."
    user = MatrixClient(console.server.base_url)
    login = user.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "zoe"},
                                 "password": USER_PASSWORD}, auth=False)  # fmt: skip
    user.access_token = login.json["access_token"]
    room_id = user.create_room()

    # Found by search; suspended (sends refused), then not.
    admin_page.goto("/users")
    page.fill('input[name="q"]', "Zoë")
    page.click('#user-search button[type="submit"]')
    page.click(f'a.user-link:text-is("{user_id}")')
    assert page.locator("#user-id").inner_text() == user_id
    page.click("#toggle-suspend")
    assert page.locator("#flag-suspended").inner_text() == "yes"
    sent = user.put(
        f"/rooms/{quote(room_id)}/send/m.room.message/t1", {"msgtype": "m.text", "body": "x"}, expect=403
    )
    assert sent.json["errcode"] == "M_USER_SUSPENDED"
    page.click("#toggle-suspend")
    assert page.locator("#flag-suspended").inner_text() == "no"

    # Log out everywhere: the preview's counts, then exactly those ended.
    assert page.locator("#logout-preview").inner_text() == "Ends 1 device and 1 access token."
    page.click("#logout-all-submit")
    assert page.locator(".notice").inner_text() == "Logged out everywhere: 1 device, 1 access token."
    assert user.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"
    login = user.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "zoe"},
                                 "password": USER_PASSWORD}, auth=False)  # fmt: skip
    user.access_token = login.json["access_token"]
    page.reload()

    preview = page.locator("#deactivate-preview").inner_text()
    assert "Ends 1 device and 1 access token, leaves 1 joined room" in preview
    admin_page.shot("user-detail")

    # The password is asked again; a wrong one changes nothing.
    page.fill('#deactivate input[name="confirm_password"]', "not my password")
    page.click("#deactivate-submit")
    assert "password you confirmed with is wrong" in page.locator("#error-message").inner_text()
    assert user.get("/account/whoami").json["user_id"] == user_id

    page.go_back()
    page.reload()
    page.check("#erase")
    page.fill('#deactivate input[name="confirm_password"]', console.admin_password)
    page.click("#deactivate-submit")
    assert page.locator(".notice").inner_text() == "Deactivated and erased."
    assert page.locator("#flag-deactivated").inner_text() == "yes (erased)"
    admin_page.shot("user-deactivated")
    assert user.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"

    # The audit trail has it, with the counts the preview showed.
    admin_page.goto("/audit?action=user_deactivate")
    row = page.locator("#audit-table tbody tr").first.inner_text()
    assert user_id in row and "console" in row and "devices=1" in row and "erase=True" in row
    admin_page.shot("audit")


def test_a_registration_token_created_in_the_console_lets_someone_register(
    admin_page: ConsolePage, console: Console
) -> None:
    page = admin_page.page
    admin_page.goto("/users")
    page.click("#registration-tokens")
    page.fill("#new-token", "welcome-1")
    page.fill("#new-uses", "1")
    page.click("#create-token-submit")
    assert page.locator(".notice").inner_text() == "Created token welcome-1."
    admin_page.shot("token-created")

    client = MatrixClient(console.server.base_url)
    body = {"username": "newcomer", "password": USER_PASSWORD}
    session = client.post("/register", body, auth=False, expect=401).json["session"]
    auth = {"type": "m.login.registration_token", "token": "welcome-1", "session": session}
    done = client.post("/register", {**body, "auth": auth}, auth=False)
    assert done.json["user_id"] == f"@newcomer:{console.server.server_name}"

    page.reload()
    row = page.locator("#tokens tbody tr", has_text="welcome-1").inner_text()
    assert "\t1\t0\t1\t" in row  # uses allowed 1, pending 0, completed 1
    # Used up: the next registration with it is refused.
    other = {"username": "latecomer", "password": USER_PASSWORD}
    session = client.post("/register", other, auth=False, expect=401).json["session"]
    refused = client.post(
        "/register", {**other, "auth": {**auth, "session": session}}, auth=False, expect=401
    )
    assert refused.json["errcode"] == "M_FORBIDDEN"


def test_a_tour_of_every_console_page_finds_no_error_and_no_dead_link(
    admin_page: ConsolePage, console: Console
) -> None:
    """Every page reachable from the navigation and its links (other areas' pages too, as they
    register in the nav): no 4xx/5xx, no browser console error, every link alive."""
    someone = console.register()
    someone.create_room()
    spam = console.register()
    spam.create_room()
    console.api(
        "POST", f"/_synapse/admin/v1/user/{quote(str(spam.user_id), safe='')}/redact", json={"rooms": []}
    )
    page = admin_page.page
    admin_page.goto("/")
    nav = page.eval_on_selector_all("nav.main a", "els => els.map(e => [e.textContent, e.href])")
    labels = [label for label, _ in nav]
    assert {"Dashboard", "Users", "Jobs", "Audit"} <= set(labels)
    # The dashboard sees this homeserver's processes by their heartbeats, and its storage.
    processes = page.locator("#processes").inner_text()
    assert "politburo" in processes and "all" in processes and "alive" in processes
    assert "up to date" in page.locator("#migrations").inner_text()
    assert "PostgreSQL" in page.locator("#card-versions").inner_text()

    origin = console.base_url
    queue: list[str] = [href for _, href in nav]
    seen: set[str] = set(queue)
    visited: dict[str, int] = {}
    while queue and len(visited) < 80:
        url = queue.pop(0)
        response = page.goto(url)
        assert response is not None
        visited[url] = response.status
        assert response.status < 400, f"{url} answered {response.status}"
        if url in {href for _, href in nav}:
            admin_page.shot("tour-" + (url[len(origin) :].strip("/").replace("/", "-") or "dashboard"))
        # getAttribute, not .href: an SVG link's href is an SVGAnimatedString (the DAG pictures).
        # Downloads (the `dag resolve` input) are files, not pages: their own tests fetch them.
        links = "els => els.map(e => new URL(e.getAttribute('href'), document.baseURI).href)"
        for href in page.eval_on_selector_all("a[href]:not([download])", links):
            href = href.split("#")[0]
            if href.startswith(origin) and "notice=" not in href and href not in seen:
                seen.add(href)
                queue.append(href)
    assert len(visited) >= 8
    assert not queue or len(visited) == 80
    assert admin_page.errors == [], admin_page.errors

    # "Run now" queues a scheduled job at once, audited.
    admin_page.goto("/jobs")
    page.locator("#scheduled-jobs tr", has_text="expire-login-tokens").locator("button").click()
    assert page.locator(".notice").inner_text() == "Queued expire-login-tokens."
    audited = console.server.query("SELECT actor, via FROM audit_log WHERE action = 'job_run_now'")
    assert audited == [(console.admin_user_id, "console")]


def test_totp_guards_the_console_login_once_set_up(page: ConsolePage, console: Console) -> None:
    make_admin(console.server, "second", console.admin_password)
    offset_ms = advance_clock(console.server.base_url, 0)  # the homeserver's clock, for the codes

    def code_now() -> str:
        return str(pyotp.TOTP(secret).at(time.time() + offset_ms / 1000))

    page.login("second", console.admin_password)
    page.goto("/account")
    page.page.fill('input[name="confirm_password"]', console.admin_password)
    page.page.click("#totp-start")
    secret = page.page.locator("#totp-secret").inner_text()
    page.shot("totp-setup")
    page.page.fill("#code", code_now())
    page.page.click("#totp-confirm")
    assert page.page.locator("#totp-state").inner_text().startswith("On")
    page.page.click("#logout")

    page.login("second", console.admin_password)  # no code
    assert "authentication code" in page.page.locator("#login-error").inner_text()
    page.login("second", console.admin_password, totp=code_now())  # the code just used: never twice
    assert "authentication code" in page.page.locator("#login-error").inner_text()
    offset_ms = advance_clock(console.server.base_url, 30_000)  # the next code
    page.login("second", console.admin_password, totp=code_now())
    assert page.page.locator("#whoami").inner_text() == f"@second:{console.server.server_name}"
    stored = console.server.query("SELECT secret FROM admin_totp")
    assert stored and secret not in stored[0][0]  # sealed at rest

    # Lost the phone: another admin removes the second factor (password asked again).
    page.page.click("#logout")
    page.login(ADMIN, console.admin_password)
    page.goto(f"/users/{quote(f'@second:{console.server.server_name}', safe='')}")
    page.page.fill('#remove-totp input[name="confirm_password"]', console.admin_password)
    page.page.click("#remove-totp-submit")
    assert page.page.locator(".notice").inner_text() == "Two-factor authentication removed."
    assert not console.server.query("SELECT 1 FROM admin_totp")


def test_failed_console_logins_are_rate_limited_per_account(console: Console) -> None:
    make_admin(console.server, "third", console.admin_password)
    with httpx.Client(base_url=console.base_url) as browser:

        def attempt(password: str, user: str = "third") -> httpx.Response:
            form = browser.get("/login").text
            token = form.split('name="login_csrf" value="', 1)[1].split('"', 1)[0]
            return browser.post(
                "/login", data={"login_csrf": token, "user": user, "password": password, "next": "/"}
            )

        assert attempt("wrong").status_code == 200  # the form again, with the reason
        without_token = browser.post("/login", data={"user": "third", "password": console.admin_password})
        assert without_token.status_code == 403 and "politburo_session" not in browser.cookies
        for _ in range(4):  # the user ID or the localpart: the same account, the same bucket
            attempt("wrong", user=f"@third:{console.server.server_name}")
        limited = attempt(console.admin_password)  # even the right password waits now
        assert limited.status_code == 429 and "Too many failed attempts" in limited.text
        assert "politburo_session" not in browser.cookies


def _forget_failed_logins() -> None:
    """Failed console logins are counted per address too (10, then one every 30 s), and every
    test here logs in from 127.0.0.1: the deliberate failures of earlier tests (the rate-limit
    test's, wrong TOTP codes) must not refuse a later test's first login, however fast the
    suite runs. Keys are prefixed per homeserver: only console-login buckets are reset."""
    r = redis.Redis.from_url(REDIS_URL)
    for key in r.scan_iter("*:rl:console_login:*"):
        r.delete(key)


@contextlib.contextmanager
def _console_session(console: Console, user: str, password: str) -> Iterator[httpx.Client]:
    """A console session made the way a browser does (the login form and its token)."""
    _forget_failed_logins()
    with httpx.Client(base_url=console.base_url) as client:
        form = client.get("/login").text
        token = form.split('name="login_csrf" value="', 1)[1].split('"', 1)[0]
        data = {"login_csrf": token, "user": user, "password": password, "next": "/users"}
        r = client.post("/login", data=data)
        assert r.status_code == 302 and r.headers["location"] == "/users", r.text
        yield client


def test_a_console_session_ends_when_its_admin_changes_password_or_loses_admin(console: Console) -> None:
    user_id, _ = make_admin(console.server, "fifth", console.admin_password)
    path = f"/_synapse/admin/v1/reset_password/{quote(user_id, safe='')}"
    with _console_session(console, "fifth", console.admin_password) as browser:
        assert browser.get("/users").status_code == 200
        console.api("POST", path, json={"new_password": "another one", "logout_devices": False})
        gone = browser.get("/users")
        assert gone.status_code == 302 and gone.headers["location"].startswith("/login")
    with _console_session(console, "fifth", "another one") as browser:
        assert browser.get("/").status_code == 200
        console.api("PUT", f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/admin", json={"admin": False})
        assert browser.get("/").status_code == 302

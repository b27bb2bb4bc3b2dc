"""The console's front door, in a real browser: login, CSRF, logout, who may come in, and
how Politburo answers strangers (foreign Host, the public servers, non-admin tokens)."""

from __future__ import annotations

import httpx

from tests.politburo.conftest import ADMIN, Console, ConsolePage


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
    page.login(str(user.user_id), "correct horse battery")  # MatrixClient.register's default
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

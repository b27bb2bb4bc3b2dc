"""The console and admin API on the embedded default: SQLite, no Redis, tasks in-process."""

from __future__ import annotations

import httpx

from tests.politburo.conftest import ADMIN, ADMIN_PASSWORD, make_admin
from tests.support.live import LiveServer, start_with_politburo


def test_every_console_page_and_the_admin_api_work_on_sqlite_without_redis(tmp_path) -> None:
    server = LiveServer(tmp_path, database="sqlite", redis=False)
    politburo = start_with_politburo(server)
    try:
        user_id, token = make_admin(server, ADMIN, ADMIN_PASSWORD)
        with httpx.Client(base_url=politburo.base_url) as browser:
            form = browser.get("/login").text
            login_csrf = form.split('name="login_csrf" value="', 1)[1].split('"', 1)[0]
            data = {"login_csrf": login_csrf, "user": ADMIN, "password": ADMIN_PASSWORD, "next": "/"}
            assert browser.post("/login", data=data).status_code == 302
            dashboard = browser.get("/")
            assert (
                dashboard.status_code == 200
                and "SQLite" in dashboard.text
                and "in-process (no broker)" in dashboard.text
            )
            for path in (
                "/users",
                f"/users/{user_id}",
                "/users/new",
                "/registration-tokens",
                "/jobs",
                "/audit",
                "/account",
            ):
                assert browser.get(path).status_code == 200, path
            csrf = (
                browser.get("/registration-tokens")
                .text.split('name="csrf_token" value="', 1)[1]
                .split('"', 1)[0]
            )
            made = browser.post(
                "/registration-tokens", data={"csrf_token": csrf, "action": "create", "token": "lite"}
            )
            assert made.status_code == 302 and "Created" in browser.get(made.headers["location"]).text
        users = httpx.get(
            politburo.base_url + "/_synapse/admin/v2/users", headers={"Authorization": f"Bearer {token}"}
        )
        assert [u["name"] for u in users.json()["users"]] == [user_id]
    finally:
        politburo.stop()
        server.destroy()

"""Fixtures for Politburo's tests: a real homeserver (``serve all``) with a ``serve politburo``
process on the same database, an admin account, and Playwright driving Debian's Chromium.

* ``console`` (module): the running pair and the admin (:class:`Console`): ``console.api(...)``
  calls the admin JSON API with the admin's token, ``console.url(path)`` is a console URL.
* ``browser`` (module): Chromium (``/usr/bin/chromium``; missing is a failure, not a skip:
  ``manage.py runtests`` apt-installs it).
* ``page`` (function): a fresh browser context on the console, not logged in
  (:class:`ConsolePage`: ``.page`` the Playwright page, ``.errors`` the browser console's
  errors, ``.shot(label)`` a full-page screenshot into ``test-artifacts/politburo/``);
  ``admin_page``: the same, logged in as the admin.

Screenshots written during the run are listed at its end.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support.client import MatrixClient
from tests.support.live import ROOT, LiveServer, Politburo, start_with_politburo

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "politburo"
ADMIN = "boss"
ADMIN_PASSWORD = "politburo correct horse"
USER_PASSWORD = "correct horse battery"
#: The homeserver of the console tests: registration needs a token (made in the console).
CONSOLE_CONFIG = {"registration_requires_token": True}
_SESSION_START = time.time()


@dataclass
class Console:
    server: LiveServer
    politburo: Politburo
    admin_user_id: str
    admin_password: str
    admin_token: str

    @property
    def base_url(self) -> str:
        return self.politburo.base_url

    def url(self, path: str) -> str:
        return self.politburo.base_url + path

    def api(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """The admin JSON API at ``path`` (with the admin's token unless ``token`` is given)."""
        token = self.admin_token if token == "" else token
        headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
        return httpx.request(method, self.url(path), headers=headers, timeout=30.0, **kwargs)

    def register(self, localpart: str | None = None, password: str = USER_PASSWORD) -> MatrixClient:
        """A new ordinary user, made through the admin API (registration needs a token here),
        logged in on the homeserver."""
        localpart = localpart or f"user{secrets.token_hex(4)}"
        user_id = f"@{localpart}:{self.server.server_name}"
        made = self.api("PUT", f"/_synapse/admin/v2/users/{quote(user_id)}", json={"password": password})
        assert made.status_code == 201, made.text
        client = MatrixClient(self.server.base_url)
        login = client.post(
            "/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
            },
            auth=False,
        )
        assert login.status == 200, login.json
        client.access_token, client.user_id = login.json["access_token"], login.json["user_id"]
        client.device_id = login.json["device_id"]
        return client


def make_admin(server: LiveServer, localpart: str, password: str) -> tuple[str, str]:
    """An admin account made with ``register_user --admin``; (user ID, access token)."""
    pw = server.workdir / f"pw-{localpart}"
    pw.write_text(password + "\n")
    made = server.manage("register_user", localpart, "--admin", "--password-file", str(pw))
    assert made.returncode == 0, made.stderr
    login = MatrixClient(server.base_url).post(
        "/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
        },
        auth=False,
    )
    assert login.status == 200, login.json
    return login.json["user_id"], login.json["access_token"]


def start_console(workdir: Path, config: dict[str, Any] | None = None) -> Console:
    server = LiveServer(workdir, config=config)
    politburo = start_with_politburo(server)
    user_id, token = make_admin(server, ADMIN, ADMIN_PASSWORD)
    return Console(server, politburo, user_id, ADMIN_PASSWORD, token)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    running = start_console(tmp_path_factory.mktemp("politburo"), CONSOLE_CONFIG)
    try:
        yield running
    finally:
        running.politburo.stop()
        running.server.destroy()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running in this thread while it
    lives, and Django refuses database access from a thread with a running loop, so a worker's
    later non-browser tests must not inherit it."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (manage.py runtests does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class ConsolePage:
    """A browser tab on the console, recording the browser console's errors."""

    page: Any
    console: Console
    test_name: str
    errors: list[str] = field(default_factory=list)
    shots: int = 0

    def goto(self, path: str) -> Any:
        return self.page.goto(self.console.url(path))

    def shot(self, label: str) -> Path:
        """A full-page screenshot, ``test-artifacts/politburo/<test>-<n>-<label>.png``."""
        self.shots += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^a-z0-9_-]+", "-", f"{self.test_name}-{self.shots:02d}-{label}".lower())
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def login(self, user: str, password: str, *, totp: str = "") -> None:
        self.goto("/login")
        self.page.fill("#user", user)
        self.page.fill("#password", password)
        if totp:
            self.page.fill("#totp", totp)
        self.page.click("#login-submit")
        self.page.wait_for_load_state()


def _new_page(browser: Any, console: Console, request: pytest.FixtureRequest) -> Iterator[ConsolePage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    wrapped = ConsolePage(page, console, request.node.name)
    page.on("console", lambda msg: wrapped.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: wrapped.errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())  # the forms' data-confirm questions
    try:
        yield wrapped
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            wrapped.shot("failure")  # where the browser was when the test failed
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, console: Console, request: pytest.FixtureRequest) -> Iterator[ConsolePage]:
    yield from _new_page(browser, console, request)


@pytest.fixture
def admin_page(page: ConsolePage, console: Console) -> ConsolePage:
    page.login(ADMIN, console.admin_password)
    assert page.page.locator("#whoami").inner_text() == console.admin_user_id
    return page


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ARTIFACTS.exists():
        return
    shots = sorted(p for p in ARTIFACTS.glob("*.png") if p.stat().st_mtime >= _SESSION_START)
    if shots:
        terminalreporter.write_sep("-", f"Politburo screenshots ({len(shots)})")
        for shot in shots:
            terminalreporter.write_line(str(shot.relative_to(ROOT)))

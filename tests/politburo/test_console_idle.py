"""Time in the console, with the homeserver's test clock moved instead of waiting: an idle
console session ends, and an idle Politburo process stops itself (``admin_idle_shutdown``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.politburo.conftest import CONSOLE_CONFIG, Console, ConsolePage, start_console
from tests.support.live import advance_clock, wait_for


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    config = {**CONSOLE_CONFIG, "admin_session_idle_timeout": "30m", "admin_idle_shutdown": "2h"}
    running = start_console(tmp_path_factory.mktemp("politburo-idle"), config)
    try:
        yield running
    finally:
        running.politburo.stop()
        running.server.destroy()


def test_an_idle_session_ends_and_an_idle_politburo_stops(admin_page: ConsolePage, console: Console) -> None:
    page = admin_page.page
    # Activity keeps the session: 20 minutes, a request, 20 minutes more.
    advance_clock(console.server.base_url, 20 * 60_000)
    admin_page.goto("/users")
    advance_clock(console.server.base_url, 20 * 60_000)
    admin_page.goto("/")
    assert page.locator("#whoami").inner_text() == console.admin_user_id

    # 31 minutes without a request: the next one goes to the login page.
    advance_clock(console.server.base_url, 31 * 60_000)
    admin_page.goto("/users")
    assert page.url.startswith(console.url("/login?next=%2Fusers"))
    admin_page.shot("session-expired")
    assert not console.server.query("SELECT 1 FROM console_sessions")

    # Two hours without a request: the process stops by itself, cleanly.
    proc = console.politburo.proc
    assert proc is not None and proc.poll() is None
    advance_clock(console.server.base_url, 2 * 3_600_000 + 60_000)
    wait_for(lambda: proc.poll() is not None, "politburo to stop when idle", timeout=30)
    assert proc.returncode == 0
    assert "admin_idle_shutdown" in (console.server.workdir / "politburo.log").read_text()

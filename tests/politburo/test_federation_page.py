"""The console's Federation page in a real browser: the destinations table (back-off, queue),
"Retry now" ending a back-off, and the federation tester's verdict per step for a live server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.ops.netfixtures import Certs, fake_homeserver
from tests.politburo.conftest import Console, ConsolePage, start_console

HOUR_MS = 3600 * 1000


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The console of a Dagma that trusts the test CA and may reach loopback (the tester's target)."""
    work = tmp_path_factory.mktemp("federation-page")
    certs = Certs(work / "certs")
    running = start_console(
        work / "dagma",
        config={
            "federation_custom_ca_list": [str(certs.ca_path)],
            "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
        },
    )
    running.certs = certs  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        running.politburo.stop()
        running.server.destroy()


def _execute(console: Console, sql: str, params: tuple[Any, ...] = ()) -> None:
    url = f"postgresql://postgres@127.0.0.1:5432/{console.server.db_name}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql, params)


def test_an_admin_sees_a_failing_destination_retries_it_and_tests_a_server(
    admin_page: ConsolePage, console: Console
) -> None:
    now = int(console.server.query("SELECT (extract(epoch from now()) * 1000)::bigint")[0][0])
    _execute(
        console,
        "INSERT INTO federation_destinations (server_name, next_attempt_ts, failures, last_success_ts, "
        "last_failure_ts, failing_since_ts, last_error, dead_lettered, txn_id, txn_counter, lease_owner, "
        "lease_expires_ts) VALUES ('down.example', %s, 6, %s, %s, %s, 'ConnectError: refused', 0, '', 0, '', 0)",
        (now + HOUR_MS, now - 5 * HOUR_MS, now - 1000, now - 3 * HOUR_MS),
    )
    page = admin_page.page
    admin_page.page.click("nav.main >> text=Federation")
    page.wait_for_url(console.url("/federation"))
    row = page.locator('tr[data-destination="down.example"]')
    assert row.locator(".failures").inner_text() == "6"
    assert "ConnectError: refused" in row.inner_text()
    admin_page.shot("destinations")

    row.locator("button.retry").click()
    page.wait_for_load_state()
    assert "Retrying down.example now." in page.locator(".notice").inner_text()
    row = page.locator('tr[data-destination="down.example"]')
    assert row.locator(".failures").inner_text() == "0" and row.locator("button.retry").count() == 0
    audit = console.server.query(
        "SELECT actor, via FROM audit_log WHERE action = 'federation.reset_connection'"
    )
    assert audit == [(console.admin_user_id, "console")]

    # The tester, against a live server with a good certificate and self-signed keys.
    peer = fake_homeserver(
        console.certs.issue("peer", "localhost", "127.0.0.1"),  # type: ignore[attr-defined]
        server_name_of=lambda port: f"localhost:{port}",
    )
    try:
        page.click("#open-tester")
        page.fill("#server_name", f"localhost:{peer.port}")
        page.click("#run-tester")
        page.wait_for_selector("#steps")
    finally:
        peer.close()
    verdicts = {
        r.get_attribute("data-step"): r.locator(".verdict").inner_text()
        for r in page.locator("#steps tbody tr").all()
    }
    assert verdicts["name"] == "OK" and verdicts["tls"] == "OK" and verdicts["keys"] == "OK", verdicts
    assert verdicts["well-known"] == "SKIP" and verdicts["version"] == "OK"
    admin_page.shot("tester")

    page.fill("#server_name", "not a server!")
    page.click("#run-tester")
    page.wait_for_load_state()
    assert "is not a server name" in page.locator("#tester-error").inner_text()
    assert admin_page.errors == []

"""The rooms area of the console in a browser: a history purge whose preview equals its result,
deleting and blocking a room, and the reports page acting on a client's report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.media import images
from tests.politburo.conftest import Console, ConsolePage
from tests.support.client import q
from tests.support.live import CeleryWorker, wait_for


@pytest.fixture(scope="module")
def worker(console: Console) -> Iterator[CeleryWorker]:
    running = CeleryWorker(console.server, "maintenance", name="rooms-worker").start()
    try:
        yield running
    finally:
        running.stop()


def _job_result(worker: CeleryWorker, page: ConsolePage, path: str) -> dict[str, Any]:
    """Reload ``path`` until its job row says complete; the row's result."""

    def done() -> Any:
        page.goto(path)
        row = page.page.locator(".job-row").first
        status = row.locator(".status").inner_text() if row.count() else ""
        assert status != "failed", row.inner_text() + worker.log_text()[-3000:]
        return status == "complete" and row

    try:
        row = wait_for(done, "the admin job to complete", timeout=30)
    except AssertionError:
        raise AssertionError(page.page.inner_text("main")[:3000] + worker.log_text()[-3000:]) from None
    text = row.locator(".result").inner_text().replace("'", '"')
    return dict(json.loads(text))


def test_purge_history_from_the_console_removes_what_its_preview_showed(
    admin_page: ConsolePage, console: Console, worker: CeleryWorker
) -> None:
    alice = console.register()
    room_id = alice.create_room(name="console purge room")
    for i in range(6):
        alice.send(room_id, f"old {i}")
    boundary = alice.send(room_id, "stop here")
    alice.send(room_id, "newest")
    page = admin_page.page
    admin_page.goto("/rooms?q=console+purge")  # sorted by members: events counted for the rows shown
    assert int(page.locator(f"tr[data-room-id='{room_id}'] .events").inner_text()) >= 8
    admin_page.goto("/rooms?sort=events")
    page.click(f"tr[data-room-id='{room_id}'] a")
    assert page.locator("#room-id").inner_text() == room_id
    assert page.locator("#power-users").inner_text().count(alice.user_id) == 1
    page.fill("#purge-form input[name=before]", boundary)
    page.check("#purge-form input[name=delete_local]")
    page.click("#purge-form button")
    previewed = int(page.locator("#preview-events").inner_text())
    assert previewed == 6
    admin_page.shot("purge-preview")
    page.fill("#purge-confirm input[name=confirm_password]", console.admin_password)
    page.click("#purge-confirm button")
    result = _job_result(worker, admin_page, f"/rooms/{q(room_id)}")
    assert result["events"] == previewed
    chunk = alice.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 50}).json["chunk"]
    assert not [e for e in chunk if e["content"].get("body", "").startswith("old ")]
    assert admin_page.errors == []


def test_deleting_and_blocking_a_room_from_the_console(
    admin_page: ConsolePage, console: Console, worker: CeleryWorker
) -> None:
    alice = console.register()
    bob = console.register()
    room_id = alice.create_room(preset="public_chat", name="console doomed room")
    bob.join(room_id)
    page = admin_page.page
    admin_page.goto(f"/rooms/{q(room_id)}")
    page.fill("#delete-form input[name=new_room_user_id]", f"@mod:{console.server.server_name}")
    page.fill("#delete-form textarea[name=message]", "Closed by the admins")
    page.click("#delete-form button")
    assert page.locator("#preview-local").inner_text().startswith("2")  # nothing deleted yet
    assert alice.get(f"/rooms/{q(room_id)}/joined_members").status == 200
    page.fill("#delete-confirm input[name=confirm_password]", console.admin_password)
    page.click("#delete-confirm button")
    assert "Deleting" in page.locator(".notice").inner_text()
    result = _job_result(worker, admin_page, "/rooms")
    shutdown = result["shutdown_room"]
    assert sorted(shutdown["kicked_users"]) == sorted([str(alice.user_id), str(bob.user_id)])
    assert bob.post(f"/rooms/{q(room_id)}/join", expect=403).json["errcode"] == "M_FORBIDDEN"
    new_room = shutdown["new_room_id"]
    bodies = [
        e["content"].get("body")
        for e in bob.get(f"/rooms/{q(new_room)}/messages", params={"dir": "b"}).json["chunk"]
    ]
    assert "Closed by the admins" in bodies
    # A wrong password changes nothing.
    other = alice.create_room(name="survivor")
    admin_page.goto(f"/rooms/{q(other)}")
    page.click("#delete-form button")
    page.fill("#delete-confirm input[name=confirm_password]", "wrong password")
    page.click("#delete-confirm button")
    assert alice.get(f"/rooms/{q(other)}/joined_members").status == 200
    assert other in alice.get("/joined_rooms").json["joined_rooms"]


def test_the_reports_page_shows_a_report_and_redacts_the_event(
    admin_page: ConsolePage, console: Console
) -> None:
    alice = console.register()
    bob = console.register()
    room_id = alice.create_room(preset="public_chat", name="reported in console")
    bob.join(room_id)
    bad = bob.send(room_id, "rude words")
    alice.post(f"/rooms/{q(room_id)}/report/{q(bad)}", {"reason": "rude", "score": -50})
    page = admin_page.page
    admin_page.goto("/reports?kind=event")
    row = page.locator(".report-row", has_text="rude words")
    assert (
        row.locator(".sender").inner_text() == bob.user_id and row.locator(".reason").inner_text() == "rude"
    )
    row.locator("button[value=redact]").click()  # without the password: refused, nothing redacted
    assert alice.get(f"/rooms/{q(room_id)}/event/{q(bad)}").json["content"] == {
        "msgtype": "m.text",
        "body": "rude words",
    }
    admin_page.goto("/reports?kind=event")
    row = page.locator(".report-row", has_text="rude words")
    row.locator("form.confirmed input[name=confirm_password]").fill(console.admin_password)
    row.locator("button[value=redact]").click()
    assert "redacted" in page.locator(".notice").inner_text()
    assert alice.get(f"/rooms/{q(room_id)}/event/{q(bad)}").json["content"] == {}
    page.locator(".report-row", has_text="rude").locator("button[value=suspend]").click()
    assert "suspended" in page.locator(".notice").inner_text()
    assert bob.put(f"/rooms/{q(room_id)}/send/m.room.message/t1", {"msgtype": "m.text", "body": "x"},
                   expect=403).json["errcode"] == "M_USER_SUSPENDED"  # fmt: skip
    page.locator(".report-row", has_text="rude").locator("button[value=dismiss]").click()
    assert page.locator(".report-row", has_text="rude").count() == 0

    # A reported image: "Quarantine its media" makes the upload 404 for everyone.
    carol = console.register()
    carol.join(room_id)
    mxc = carol.post("/_matrix/media/v3/upload", content=images.png(20, 20, (200, 10, 10)),
                     headers={"Content-Type": "image/png"}).json["content_uri"]  # fmt: skip
    shown = carol.put(f"/rooms/{q(room_id)}/send/m.room.message/pic1",
                      {"msgtype": "m.image", "body": "pic.png", "url": mxc}).json["event_id"]  # fmt: skip
    alice.post(f"/rooms/{q(room_id)}/report/{q(shown)}", {"reason": "gross picture"})
    media_path = "/_matrix/client/v1/media/download/" + mxc.removeprefix("mxc://")
    assert alice.get(media_path, expect=None).status == 200
    admin_page.goto("/reports?kind=event")
    page.locator(".report-row", has_text="gross picture").locator("button[value=quarantine]").click()
    assert "1 media item(s) quarantined" in page.locator(".notice").inner_text()
    assert alice.get(media_path, expect=None).status == 404

"""The console's Media and Keys pages in a real browser: an admin quarantines an upload (which
then 404s for its uploader's client, download and thumbnail), previews a purge, and rotates the
signing key (the key endpoint then lists the old key under old_verify_keys)."""

from __future__ import annotations

import httpx

from tests.media import images
from tests.politburo.conftest import Console, ConsolePage
from tests.support.live import wait_for


def test_an_admin_quarantines_media_previews_a_purge_and_rotates_the_key(
    admin_page: ConsolePage, console: Console
) -> None:
    page = admin_page.page
    page.on("dialog", lambda dialog: dialog.accept())
    alice = console.register()
    mxc = alice.post(
        "/_matrix/media/v3/upload",
        content=images.png(80, 60, (10, 200, 30)),
        headers={"Content-Type": "image/png"},
    ).json["content_uri"]
    path = mxc.removeprefix("mxc://")

    admin_page.goto("/media")
    assert alice.user_id in page.locator("#usage").inner_text()
    page.fill("#mxc", mxc)
    page.click("#lookup")
    page.wait_for_load_state()
    # Politburo serves the preview itself, and the browser decodes it.
    assert page.locator("#preview").evaluate("img => img.complete && img.naturalWidth") == 80
    admin_page.shot("media-item")
    page.click("#quarantine")
    page.wait_for_load_state()
    assert page.locator("#quarantined").is_visible() and not page.locator("#preview").count()
    admin_page.shot("media-quarantined")
    for what, params in (("download", None), ("thumbnail", {"width": "32", "height": "32"})):
        r = alice.get(f"/_matrix/client/v1/media/{what}/{path}", params=params, expect=None)
        assert r.status == 404 and r.json["errcode"] == "M_NOT_FOUND"

    admin_page.goto("/media")
    page.fill("#local-before", "30d")
    page.click("#preview-local")
    page.wait_for_load_state()
    assert page.locator("#preview-items").inner_text() == "0"  # nothing is 30 days old here
    admin_page.shot("media-purge-preview")

    admin_page.goto("/keys")
    [old_id] = httpx.get(console.server.base_url + "/_matrix/key/v2/server").json()["verify_keys"]
    assert "verify_keys" in page.locator(f'tr[data-key-id="{old_id}"]').inner_text()
    page.fill('form[action="/keys/rotate"] input[name="confirm_password"]', console.admin_password)
    page.click("#rotate")
    page.wait_for_load_state()
    assert "signs from now on" in page.locator(".notice").inner_text()
    admin_page.shot("keys-rotated")
    # The running server picks the new key up within seconds, without a restart.
    published = wait_for(
        lambda: (
            (p := httpx.get(console.server.base_url + "/_matrix/key/v2/server").json())
            and old_id in p["old_verify_keys"]
            and p
        ),
        "the old key under old_verify_keys",
    )
    assert old_id in published["old_verify_keys"] and old_id not in published["verify_keys"]
    assert published["old_verify_keys"][old_id]["expired_ts"] > 0

    # The compromise flow: a preview first (nothing changes), then the run logs everyone out.
    admin_page.goto("/keys")
    page.fill("#since", "1 hour ago")
    page.click("#compromised-preview")
    page.wait_for_load_state()
    assert "preview" in page.locator("h1").inner_text() and page.locator("#checklist li").count() >= 5
    assert alice.get("/account/whoami", expect=None).status == 200
    page.fill('input[name="confirm_password"]', console.admin_password)
    page.click("#compromised-run")
    page.wait_for_load_state()
    assert "Revoked" in page.locator("#compromise-summary").inner_text()
    admin_page.shot("keys-compromised")
    assert alice.get("/account/whoami", expect=None).json["errcode"] == "M_UNKNOWN_TOKEN"
    admin_page.goto("/keys")
    assert page.url.startswith(console.url("/login"))  # the admin's console session went too
    assert admin_page.errors == []

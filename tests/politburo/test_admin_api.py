"""Synapse's user admin API as Politburo serves it (httpx against ``serve politburo``), the
restrictions it sets taking effect in Tribune, and synadm (Synapse's admin CLI, from PyPI in
its own virtualenv) working against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import yaml

from tests.politburo.conftest import Console
from tests.support.client import MatrixClient, q
from tests.support.live import CeleryWorker, wait_for

SYNADM_VERSION = "0.49.2"
SYNADM_VENV = Path(os.path.expanduser("~/.cache/dagma")) / f"synadm-{SYNADM_VERSION}"


def u(user_id: str) -> str:
    return quote(user_id, safe="")


def test_the_user_list_filters_sorts_and_pages_as_synapse(console: Console) -> None:
    names = [console.register(f"pager{i}").user_id for i in range(5)]
    gone = console.register("pagergone")
    console.api("POST", f"/_synapse/admin/v1/deactivate/{u(str(gone.user_id))}", json={})

    first = console.api("GET", "/_synapse/admin/v2/users", params={"name": "pager", "limit": "2"}).json()
    assert [x["name"] for x in first["users"]] == names[:2]
    assert first["total"] == 5 and first["next_token"] == "2"  # v2 leaves deactivated accounts out
    rest = console.api(
        "GET", "/_synapse/admin/v2/users", params={"name": "pager", "from": "2", "limit": "10"}
    ).json()
    assert [x["name"] for x in rest["users"]] == names[2:] and "next_token" not in rest
    backwards = console.api("GET", "/_synapse/admin/v2/users", params={"name": "pager", "dir": "b"}).json()
    assert [x["name"] for x in backwards["users"]] == names[::-1]
    with_gone = console.api(
        "GET", "/_synapse/admin/v2/users", params={"name": "pager", "deactivated": "true"}
    ).json()
    assert with_gone["total"] == 6
    only_gone = console.api(
        "GET", "/_synapse/admin/v3/users", params={"name": "pager", "deactivated": "true"}
    ).json()
    assert [x["name"] for x in only_gone["users"]] == [gone.user_id] and only_gone["users"][0]["deactivated"]
    admins = console.api("GET", "/_synapse/admin/v2/users", params={"admins": "true"}).json()
    assert [x["name"] for x in admins["users"]] == [console.admin_user_id]
    newest_first = console.api(
        "GET", "/_synapse/admin/v2/users", params={"name": "pager", "order_by": "creation_ts", "dir": "b"}
    )
    assert [x["name"] for x in newest_first.json()["users"]] == names[::-1]
    for order_by in (
        "last_seen_ts",
        "displayname",
        "admin",
        "is_guest",
        "shadow_banned",
        "avatar_url",
        "user_type",
    ):
        r = console.api("GET", "/_synapse/admin/v2/users", params={"name": "pager", "order_by": order_by})
        assert r.status_code == 200 and r.json()["total"] == 5, order_by
    for bad in ({"order_by": "nope"}, {"dir": "x"}, {"from": "-1"}, {"guests": "maybe"}):
        r = console.api("GET", "/_synapse/admin/v2/users", params=bad)
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM"), bad


def test_a_users_devices_sessions_rooms_and_data_are_shown_and_managed(console: Console) -> None:
    alice = console.register()
    user = str(alice.user_id)
    room_id = alice.create_room()
    alice.put(f"/user/{q(user)}/account_data/org.example.test", {"hello": 1})
    device = str(alice.device_id)

    detail = console.api("GET", f"/_synapse/admin/v2/users/{u(user)}").json()
    assert detail["name"] == user and detail["last_seen_ts"] and detail["suspended"] is False
    devices = console.api("GET", f"/_synapse/admin/v2/users/{u(user)}/devices").json()
    assert devices["total"] == 1 and devices["devices"][0]["device_id"] == device
    assert devices["devices"][0]["last_seen_ip"] == "127.0.0.1"
    whois = console.api("GET", f"/_synapse/admin/v1/whois/{u(user)}").json()
    assert whois["devices"][device]["sessions"][0]["connections"][0]["ip"] == "127.0.0.1"
    assert (
        console.api(
            "PUT", f"/_synapse/admin/v2/users/{u(user)}/devices/{device}", json={"display_name": "phone"}
        ).json()
        == {}
    )
    assert (
        console.api("GET", f"/_synapse/admin/v2/users/{u(user)}/devices/{device}").json()["display_name"]
        == "phone"
    )
    assert console.api("GET", f"/_synapse/admin/v1/users/{u(user)}/joined_rooms").json() == {
        "joined_rooms": [room_id], "total": 1
    }  # fmt: skip
    assert console.api("GET", f"/_synapse/admin/v1/users/{u(user)}/memberships").json() == {
        "memberships": {room_id: "join"}
    }  # fmt: skip
    data = console.api("GET", f"/_synapse/admin/v1/users/{u(user)}/accountdata").json()
    assert data["account_data"]["global"]["org.example.test"] == {"hello": 1}
    assert console.api("GET", f"/_synapse/admin/v1/users/{u(user)}/pushers").json() == {
        "pushers": [],
        "total": 0,
    }
    assert console.api("GET", f"/_synapse/admin/v1/users/{u(user)}/media").json() == {"media": [], "total": 0}

    # Admin rights, username availability, logging in as the user.
    assert console.api("GET", f"/_synapse/admin/v1/users/{u(user)}/admin").json() == {"admin": False}
    r = console.api(
        "GET", "/_synapse/admin/v1/username_available", params={"username": user[1:].split(":")[0]}
    )
    assert (r.status_code, r.json()["errcode"]) == (400, "M_USER_IN_USE")
    assert console.api("GET", "/_synapse/admin/v1/username_available", params={"username": "free1"}).json() == {
        "available": True
    }  # fmt: skip
    puppet = console.api("POST", f"/_synapse/admin/v1/users/{u(user)}/login", json={}).json()["access_token"]
    assert MatrixClient(console.server.base_url, puppet).get("/account/whoami").json["user_id"] == user
    r = console.api("POST", f"/_synapse/admin/v1/users/{u(console.admin_user_id)}/login", json={})
    assert r.status_code == 400  # not as oneself

    # Deleting the device logs it out; the puppet token (no device) stays.
    assert (
        console.api(
            "POST", f"/_synapse/admin/v2/users/{u(user)}/delete_devices", json={"devices": [device]}
        ).json()
        == {}
    )
    assert alice.get("/account/whoami", expect=401).json["errcode"] == "M_UNKNOWN_TOKEN"
    assert console.api("GET", f"/_synapse/admin/v2/users/{u(user)}/devices").json()["total"] == 0

    r = console.api("GET", f"/_synapse/admin/v2/users/{u('@nobody:' + console.server.server_name)}")
    assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
    r = console.api("GET", f"/_synapse/admin/v2/users/{u('@x:elsewhere.example')}")
    assert r.status_code == 400

    audit = console.server.query(
        "SELECT action, via, actor FROM audit_log WHERE target LIKE %s", (f"%{user}%",)
    )
    assert {("device_update", "api", console.admin_user_id), ("user_login_as", "api", console.admin_user_id),
            ("device_delete", "api", console.admin_user_id)} <= set(audit)  # fmt: skip


def test_suspension_lock_shadow_ban_and_rate_limit_take_effect_in_tribune(console: Console) -> None:
    bob, eve = console.register(), console.register()
    room_id = bob.create_room(preset="public_chat")
    eve.join(room_id)
    path = f"/rooms/{q(room_id)}/send/m.room.message"

    # Suspended: reads work, sends and joins do not (M_USER_SUSPENDED); lifted again.
    r = console.api("PUT", f"/_synapse/admin/v1/suspend/{u(str(eve.user_id))}", json={"suspend": True})
    assert r.json() == {"user_suspended": eve.user_id}
    sent = eve.put(f"{path}/s1", {"msgtype": "m.text", "body": "hi"}, expect=403)
    assert sent.json["errcode"] == "M_USER_SUSPENDED"
    assert eve.get("/joined_rooms").json["joined_rooms"] == [room_id]
    console.api("PUT", f"/_synapse/admin/v1/suspend/{u(str(eve.user_id))}", json={"suspend": False})
    eve.put(f"{path}/s2", {"msgtype": "m.text", "body": "back"})

    # Shadow-banned: the send "succeeds", and nobody (not even eve) finds the event.
    assert console.api("POST", f"/_synapse/admin/v1/users/{u(str(eve.user_id))}/shadow_ban").json() == {}
    ghost = eve.put(f"{path}/s3", {"msgtype": "m.text", "body": "unseen"}).json["event_id"]
    seen = bob.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": "20"}).json["chunk"]
    assert ghost not in [e["event_id"] for e in seen] and "unseen" not in json.dumps(seen)
    # Its typing notice and a new room's invites "succeed" too, and reach nobody.
    assert (
        eve.put(f"/rooms/{q(room_id)}/typing/{q(str(eve.user_id))}", {"typing": True, "timeout": 30000}).json
        == {}
    )
    joined = bob.sync()["rooms"]["join"][room_id]
    assert str(eve.user_id) not in json.dumps(joined.get("ephemeral", {}))
    lonely = eve.create_room(preset="private_chat", invite=[str(bob.user_id)])
    assert lonely not in bob.sync()["rooms"].get("invite", {})
    assert (
        console.api("GET", f"/_synapse/admin/v2/users/{u(str(eve.user_id))}").json()["shadow_banned"] is True
    )
    console.api("DELETE", f"/_synapse/admin/v1/users/{u(str(eve.user_id))}/shadow_ban")

    # Locked: every request with the token is 401 M_USER_LOCKED, until unlocked.
    console.api("PUT", f"/_synapse/admin/v2/users/{u(str(eve.user_id))}", json={"locked": True})
    assert eve.get("/account/whoami", expect=401).json["errcode"] == "M_USER_LOCKED"
    console.api("PUT", f"/_synapse/admin/v2/users/{u(str(eve.user_id))}", json={"locked": False})
    assert eve.get("/account/whoami").json["user_id"] == eve.user_id

    # Rate-limit override: set, read, removed (an unknown setting is refused).
    rl = f"/_synapse/admin/v1/users/{u(str(eve.user_id))}/override_ratelimit"
    assert console.api("GET", rl).json() == {}
    assert console.api("POST", rl, json={"messages_per_second": 0, "burst_count": 0}).json() == {
        "messages_per_second": 0, "burst_count": 0
    }  # fmt: skip
    assert console.api("GET", rl).json() == {"messages_per_second": 0, "burst_count": 0}
    assert console.api("POST", rl, json={"messages_per_second": -1}).status_code == 400
    # A tight override takes effect on the next send: one message, then 429.
    console.api("POST", rl, json={"messages_per_second": 1, "burst_count": 1})
    eve.put(f"{path}/r1", {"msgtype": "m.text", "body": "one"})
    assert (
        eve.put(f"{path}/r2", {"msgtype": "m.text", "body": "two"}, expect=429).json["errcode"]
        == "M_LIMIT_EXCEEDED"
    )
    assert console.api("DELETE", rl).json() == {}
    assert console.api("GET", rl).json() == {}

    # Admin rights through the API (not one's own demotion).
    assert (
        console.api(
            "PUT", f"/_synapse/admin/v1/users/{u(str(eve.user_id))}/admin", json={"admin": True}
        ).json()
        == {}
    )
    assert console.api("GET", f"/_synapse/admin/v1/users/{u(str(eve.user_id))}/admin").json() == {
        "admin": True
    }
    r = console.api(
        "PUT", f"/_synapse/admin/v1/users/{u(console.admin_user_id)}/admin", json={"admin": False}
    )
    assert r.status_code == 400


def test_redacting_a_users_events_runs_as_an_admin_job(console: Console) -> None:
    worker = CeleryWorker(console.server, "maintenance").start()  # admin jobs run on it
    try:
        _redact_journey(console)
    finally:
        worker.stop()


def _redact_journey(console: Console) -> None:
    spammer, mod = console.register(), console.register()
    room_id = mod.create_room(preset="public_chat")
    spammer.join(room_id)
    ids = [spammer.send(room_id, f"spam {i}") for i in range(3)]
    r = console.api(
        "POST",
        f"/_synapse/admin/v1/user/{u(str(spammer.user_id))}/redact",
        json={"rooms": [], "reason": "spam"},
    )
    redact_id = r.json()["redact_id"]
    status = wait_for(
        lambda: (
            (s := console.api("GET", f"/_synapse/admin/v1/user/redact_status/{redact_id}").json())["status"]
            in ("complete", "failed")
            and s
        ),
        "the redaction job",
    )
    assert status == {"status": "complete", "failed_redactions": {}}
    for event_id in ids:
        event = mod.get(f"/rooms/{q(room_id)}/event/{q(event_id)}").json
        assert event["content"] == {} and event["unsigned"]["redacted_because"]["sender"] == spammer.user_id
    r = console.api("GET", "/_synapse/admin/v1/user/redact_status/nope")
    assert r.status_code == 404


def test_registration_tokens_are_created_listed_edited_and_deleted(console: Console) -> None:
    base = "/_synapse/admin/v1/registration_tokens"
    made = console.api("POST", f"{base}/new", json={"token": "abc-123", "uses_allowed": 2}).json()
    assert made == {"token": "abc-123", "uses_allowed": 2, "pending": 0, "completed": 0, "expiry_time": None}
    random = console.api("POST", f"{base}/new", json={"length": 20}).json()
    assert len(random["token"]) == 20
    assert (
        console.api("POST", f"{base}/new", json={"token": "abc-123"}).json()["errcode"] == "M_INVALID_PARAM"
    )
    for bad in ({"token": "bad token"}, {"uses_allowed": -1}, {"expiry_time": 1}, {"length": 65}):
        r = console.api("POST", f"{base}/new", json=bad)
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM"), bad
    listed = {t["token"] for t in console.api("GET", base).json()["registration_tokens"]}
    assert {"abc-123", random["token"]} <= listed
    edited = console.api("PUT", f"{base}/abc-123", json={"uses_allowed": 0}).json()
    assert edited["uses_allowed"] == 0
    invalid = {
        t["token"] for t in console.api("GET", base, params={"valid": "false"}).json()["registration_tokens"]
    }
    assert "abc-123" in invalid and random["token"] not in invalid
    assert console.api("GET", f"{base}/abc-123").json()["uses_allowed"] == 0
    assert console.api("DELETE", f"{base}/abc-123").json() == {}
    r = console.api("GET", f"{base}/abc-123")
    assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")


def _synadm() -> Path:
    """synadm from PyPI in its own virtualenv (made once, kept under ~/.cache/dagma)."""
    exe = SYNADM_VENV / "bin" / "synadm"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SYNADM_VENV)], check=True)
        subprocess.run(
            [str(SYNADM_VENV / "bin" / "pip"), "install", "-q", f"synadm=={SYNADM_VERSION}"], check=True
        )
    return exe


def test_synadm_lists_users_shows_one_and_lists_registration_tokens(console: Console, tmp_path: Path) -> None:
    carol = console.register()
    console.api("POST", "/_synapse/admin/v1/registration_tokens/new", json={"token": "for-synadm"})
    config = tmp_path / "synadm.yaml"
    config.write_text(yaml.safe_dump({
        "user": console.admin_user_id, "token": console.admin_token, "protocol": "http",
        "base_url": console.base_url, "admin_path": "/_synapse/admin", "matrix_path": "/_matrix",
        "timeout": 30, "homeserver": console.server.server_name, "ssl_verify": False, "format": "json",
    }))  # fmt: skip
    synadm = _synadm()

    def run(*args: str) -> object:
        r = subprocess.run(
            [str(synadm), "-c", str(config), "-o", "json", *args], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, r.stderr + r.stdout
        return json.loads(r.stdout)

    listed = run("user", "list")
    assert carol.user_id in [x["name"] for x in listed["users"]]  # type: ignore[index]
    details = run("user", "details", str(carol.user_id))
    assert details["name"] == carol.user_id and details["deactivated"] is False  # type: ignore[index]
    tokens = run("regtok", "list")
    assert "for-synadm" in [t["token"] for t in tokens["registration_tokens"]]  # type: ignore[index]

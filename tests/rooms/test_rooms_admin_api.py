"""Politburo's Synapse-shaped admin API over rooms (``serve politburo`` beside ``serve all``
and a Celery worker for the jobs): the room list, details, block, delete v1/v2 with their
status, history purge with its status, event reports from a client's report to the admin's
action, and the smaller room endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.client import MatrixClient, q
from tests.support.live import CeleryWorker, LiveServer, start_with_politburo, wait_for

PASSWORD = "correct horse battery"
A = "/_synapse/admin"


class Admin:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = "", **params: Any
    ) -> httpx.Response:
        tok = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        return httpx.request(
            method, self.base + A + path, headers=headers, json=body, params=params or None, timeout=30
        )

    def ok(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        r = self.call(method, path, body, **params)
        assert r.status_code == 200, (method, path, r.status_code, r.text)
        return r.json()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Admin, MatrixClient]]:
    server = LiveServer(
        tmp_path_factory.mktemp("roomsapi"),
        config={"server_notices": {"system_mxid_localpart": "notices", "room_name": "Server Notices"}},
    )
    politburo = start_with_politburo(server)
    worker = CeleryWorker(server, "maintenance").start()
    pw = server.workdir / "pw"
    pw.write_text(PASSWORD + "\n")
    made = server.manage("register_user", "root", "--admin", "--password-file", str(pw))
    assert made.returncode == 0, made.stderr
    root = MatrixClient(server.base_url)
    root.access_token = root.post("/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "root"},
                                             "password": PASSWORD}, auth=False).json["access_token"]  # fmt: skip
    root.user_id = "@root:localhost"
    try:
        yield server, Admin(politburo.base_url, str(root.access_token)), root
    finally:
        worker.stop()
        politburo.stop()
        server.destroy()


def test_only_admins_and_the_room_list_pages_orders_and_searches(env) -> None:
    server, admin, _root = env
    alice = MatrixClient(server.base_url).register()
    assert admin.call("GET", "/v1/rooms", token=alice.access_token).json()["errcode"] == "M_FORBIDDEN"
    assert admin.call("GET", "/v1/rooms", token=None).status_code == 401
    rooms = []
    for i, name in enumerate(["zulu list", "yankee list", "xray list"]):
        room_id = alice.create_room(preset="public_chat", name=name)
        for _ in range(i):
            MatrixClient(server.base_url).register().join(room_id)
        rooms.append(room_id)
    listed = admin.ok("GET", "/v1/rooms", search_term="list", order_by="joined_members", limit=2)
    assert [r["name"] for r in listed["rooms"]] == ["xray list", "yankee list"] and listed["next_batch"] == 2
    assert listed["total_rooms"] == 3 and listed["offset"] == 0
    rest = admin.ok("GET", "/v1/rooms", search_term="list", order_by="joined_members", limit=2, **{"from": 2})
    assert [r["name"] for r in rest["rooms"]] == ["zulu list"] and rest["prev_batch"] == 0
    by_name = admin.ok("GET", "/v1/rooms", search_term="list", dir="b")
    assert [r["name"] for r in by_name["rooms"]] == ["zulu list", "yankee list", "xray list"]
    assert admin.call("GET", "/v1/rooms", order_by="bogus").json()["errcode"] == "M_INVALID_PARAM"
    details = admin.ok("GET", f"/v1/rooms/{q(rooms[2])}")
    assert (
        details["joined_members"] == 3 and details["joined_local_members"] == 3 and details["public"] is False
    )
    assert (
        details["join_rules"] == "public" and details["creator"] == alice.user_id and "forgotten" in details
    )
    assert admin.ok("GET", f"/v1/rooms/{q(rooms[2])}/members")["total"] == 3
    names = admin.ok("GET", f"/v1/rooms/{q(rooms[2])}/state", type="m.room.name")["state"]
    assert [e["content"]["name"] for e in names] == ["xray list"]
    assert admin.call("GET", f"/v1/rooms/{q('!nope:localhost')}").status_code == 404
    ext = admin.ok("GET", f"/v1/rooms/{q(rooms[0])}/forward_extremities")
    assert ext["count"] == 1 and ext["results"][0]["depth"] > 0
    assert admin.ok("DELETE", f"/v1/rooms/{q(rooms[0])}/forward_extremities") == {"deleted": 0}
    first = alice.send(rooms[0], "first")
    found = admin.ok("GET", f"/v1/rooms/{q(rooms[0])}/timestamp_to_event", ts=0, dir="f")
    assert (
        found["event_id"]
        and admin.ok("GET", f"/v1/fetch_event/{q(first)}")["event"]["content"]["body"] == "first"
    )
    page = admin.ok("GET", f"/v1/rooms/{q(rooms[0])}/messages", dir="b", limit=1)
    assert [e["event_id"] for e in page["chunk"]] == [first] and "end" in page
    context = admin.ok("GET", f"/v1/rooms/{q(rooms[0])}/context/{q(first)}")
    assert context["event"]["event_id"] == first and any(
        e["type"] == "m.room.create" for e in context["state"]
    )
    alice.send(rooms[0], "pic", content={"msgtype": "m.image", "body": "x", "url": "mxc://localhost/abcdef"})
    assert admin.ok("GET", f"/v1/room/{q(rooms[0])}/media") == {
        "local": ["mxc://localhost/abcdef"],
        "remote": [],
    }
    assert any(r["room_id"] == rooms[0] for r in admin.ok("GET", "/v1/statistics/database/rooms")["rooms"])


def test_make_room_admin_join_and_server_notices(env) -> None:
    server, admin, _root = env
    alice = MatrixClient(server.base_url).register()
    bob = MatrixClient(server.base_url).register()
    room_id = alice.create_room(preset="private_chat")
    assert admin.ok("POST", f"/v1/rooms/{q(room_id)}/make_room_admin", {"user_id": bob.user_id}) == {}
    levels = alice.get(f"/rooms/{q(room_id)}/state/m.room.power_levels/").json
    assert levels["users"][bob.user_id] == 100
    bob.join(room_id)  # he was invited
    public = alice.create_room(preset="public_chat")
    carol = MatrixClient(server.base_url).register()
    assert admin.ok("POST", f"/v1/join/{q(public)}", {"user_id": carol.user_id}) == {"room_id": public}
    assert public in carol.get("/joined_rooms").json["joined_rooms"]
    refused = admin.call("POST", f"/v1/join/{q(room_id)}", {"user_id": carol.user_id})
    assert refused.status_code == 403  # private, and the admin is not in it
    sent = admin.ok("POST", "/v1/send_server_notice", {"user_id": carol.user_id,
                                                        "content": {"msgtype": "m.text", "body": "Maintenance at noon"}})  # fmt: skip
    invites = carol.sync()["rooms"]["invite"]
    (notice_room,) = invites
    carol.join(notice_room)
    bodies = [
        e["content"].get("body")
        for e in carol.get(f"/rooms/{q(notice_room)}/messages", params={"dir": "b"}).json["chunk"]
    ]
    assert "Maintenance at noon" in bodies and sent["event_id"]
    again = admin.ok(
        "POST",
        "/v1/send_server_notice",
        {"user_id": carol.user_id, "content": {"msgtype": "m.text", "body": "2"}},
    )
    assert again["event_id"] and not carol.sync()["rooms"].get("invite")  # the same room again
    notice = {"user_id": carol.user_id, "content": {"msgtype": "m.text", "body": "once"}}
    first = admin.ok("PUT", "/v1/send_server_notice/txn1", notice)
    assert admin.ok("PUT", "/v1/send_server_notice/txn1", notice) == first  # a retry sends nothing new
    assert admin.ok("PUT", "/v1/send_server_notice/txn2", notice) != first
    bad = admin.call("POST", "/v1/send_server_notice", {"user_id": "@x:elsewhere", "content": {}})
    assert bad.status_code == 400


def test_purge_history_through_the_api_reports_its_status_and_leaves_sync_working(env) -> None:
    server, admin, _root = env
    alice = MatrixClient(server.base_url).register()
    room_id = alice.create_room(name="purge me")
    since = alice.sync()["next_batch"]
    old = [alice.send(room_id, f"old {i}") for i in range(5)]
    boundary = alice.send(room_id, "keep from here")
    assert admin.call("POST", f"/v1/purge_history/{q(room_id)}", {}).status_code == 400
    assert (
        admin.call("POST", f"/v1/purge_history/{q(room_id)}", {"purge_up_to_ts": "soon"}).status_code == 400
    )
    assert (
        admin.call("POST", f"/v1/purge_history/{q('!nope:localhost')}", {"purge_up_to_ts": 1}).status_code
        == 404
    )
    by_ts = admin.ok("POST", f"/v1/purge_history/{q(room_id)}", {"purge_up_to_ts": 1})  # before everything
    assert wait_for(lambda: admin.ok("GET", f"/v1/purge_history_status/{by_ts['purge_id']}")["status"] == "complete",
                    "the purge by time")  # fmt: skip
    started = admin.ok("POST", f"/v1/purge_history/{q(room_id)}/{q(boundary)}", {"delete_local_events": True})
    status = wait_for(lambda: (s := admin.ok("GET", f"/v1/purge_history_status/{started['purge_id']}"))["status"] != "purging" and s,
                      "the purge job")  # fmt: skip
    assert status == {"status": "complete"}
    for event_id in old:
        assert admin.call("GET", f"/v1/fetch_event/{q(event_id)}").status_code == 404
    assert alice.sync(since=since)["rooms"]["join"][room_id]["timeline"]["events"]
    assert admin.call("GET", "/v1/purge_history_status/nope").status_code == 404


def test_deleting_a_room_v2_kicks_blocks_and_moves_members_with_both_status_forms(env) -> None:
    server, admin, _root = env
    alice = MatrixClient(server.base_url).register()
    bob = MatrixClient(server.base_url).register()
    room_id = alice.create_room(preset="public_chat", name="bad room", room_alias_name="badroom")
    bob.join(room_id)
    bob.send(room_id, "spam")
    started = admin.ok("DELETE", f"/v2/rooms/{q(room_id)}", {
        "new_room_user_id": "@moderator:localhost", "room_name": "Moved", "message": "Bad room was shut down",
        "block": True,
    })  # fmt: skip
    delete_id = started["delete_id"]
    done = wait_for(lambda: (s := admin.ok("GET", f"/v2/rooms/delete_status/{delete_id}"))["status"] == "complete" and s,
                    "the delete job")  # fmt: skip
    shutdown = done["shutdown_room"]
    assert sorted(shutdown["kicked_users"]) == sorted([str(alice.user_id), str(bob.user_id)])
    assert shutdown["local_aliases"] == ["#badroom:localhost"] and shutdown["failed_to_kick_users"] == []
    by_room = admin.ok("GET", f"/v2/rooms/{q(room_id)}/delete_status")["results"]
    assert [r["delete_id"] for r in by_room] == [delete_id] and by_room[0]["room_id"] == room_id
    new_room = shutdown["new_room_id"]
    assert new_room in bob.get("/joined_rooms").json["joined_rooms"]
    assert room_id not in bob.get("/joined_rooms").json["joined_rooms"]
    synced = bob.sync()["rooms"]  # the purged room is gone from sync, without an error
    assert room_id not in synced.get("join", {}) and new_room in synced["join"]
    chunk = bob.get(f"/rooms/{q(new_room)}/messages", params={"dir": "b"}).json["chunk"]
    assert "Bad room was shut down" in [e["content"].get("body") for e in chunk]
    refused = bob.post(f"/rooms/{q(room_id)}/join", expect=403).json
    assert refused["errcode"] == "M_FORBIDDEN"
    assert admin.ok("GET", f"/v1/rooms/{q(room_id)}/block") == {"block": True, "user_id": "@root:localhost"}
    assert admin.call("GET", f"/v1/rooms/{q(room_id)}").status_code == 404  # purged
    assert admin.ok("PUT", f"/v1/rooms/{q(room_id)}/block", {"block": False}) == {"block": False}
    assert (
        admin.call("PUT", f"/v1/rooms/{q(room_id)}/block", {"block": "yes"}).json()["errcode"] == "M_BAD_JSON"
    )
    assert admin.call("GET", "/v2/rooms/delete_status/unknown").status_code == 404
    # v1: synchronous, the same answer at once.
    other = alice.create_room(preset="public_chat")
    answer = admin.ok("DELETE", f"/v1/rooms/{q(other)}", {"purge": False})
    assert answer["kicked_users"] == [alice.user_id] and answer["new_room_id"] is None
    assert admin.call("DELETE", f"/v1/rooms/{q('!unknown:localhost')}", {}).status_code == 400


def test_a_reported_event_reaches_the_admin_who_reads_and_deletes_the_report(env) -> None:
    server, admin, _root = env
    alice = MatrixClient(server.base_url).register()
    bob = MatrixClient(server.base_url).register()
    room_id = alice.create_room(preset="public_chat", name="reported room")
    bob.join(room_id)
    bad = bob.send(room_id, "something nasty")
    alice.post(f"/rooms/{q(room_id)}/report/{q(bad)}", {"reason": "nasty", "score": -100})
    listed = admin.ok("GET", "/v1/event_reports", room_id=room_id)
    (report,) = listed["event_reports"]
    assert (report["event_id"], report["user_id"], report["sender"], report["reason"], report["score"]) == (
        bad, alice.user_id, bob.user_id, "nasty", -100)  # fmt: skip
    assert report["name"] == "reported room" and listed["total"] == 1
    assert admin.ok("GET", "/v1/event_reports", sender_user_id=bob.user_id)["total"] >= 1
    detail = admin.ok("GET", f"/v1/event_reports/{report['id']}")
    assert detail["event_json"]["content"]["body"] == "something nasty"
    assert admin.ok("DELETE", f"/v1/event_reports/{report['id']}") == {}
    assert admin.call("GET", f"/v1/event_reports/{report['id']}").status_code == 404
    assert admin.call("GET", "/v1/event_reports/abc").status_code == 400
    # A room report is listed apart, with the room's name and topic.
    alice.put(f"/rooms/{q(room_id)}/state/m.room.topic/", {"topic": "spam topic"})
    alice.post(f"/rooms/{q(room_id)}/report", {"reason": "the whole room"})
    bob.post(f"/rooms/{q(room_id)}/report", {"reason": "me too"})
    rooms = admin.ok("GET", "/v1/room_reports", room_id=room_id, limit=1)
    assert rooms["total"] == 2 and [r["user_id"] for r in rooms["room_reports"]] == [bob.user_id]
    assert (
        rooms["room_reports"][0]["topic"] == "spam topic"
        and rooms["room_reports"][0]["name"] == "reported room"
    )
    rest = admin.ok("GET", "/v1/room_reports", room_id=room_id, **{"from": rooms["next_batch"]})
    assert [r["reason"] for r in rest["room_reports"]] == ["the whole room"] and "next_batch" not in rest
    one = admin.ok("GET", f"/v1/room_reports/{rest['room_reports'][0]['id']}")
    assert one["user_id"] == alice.user_id
    assert admin.call("GET", f"/v1/room_reports/{report['id']}").status_code == 404

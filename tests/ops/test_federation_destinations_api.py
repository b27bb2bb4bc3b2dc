"""Synapse's federation destinations admin API against a real Dagma and Politburo: each
destination's back-off and queue as Synapse shapes them, its rooms, and ``reset_connection``
ending the back-off and waking the sender, which then delivers the queued PDU to a live peer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from tests.federation.https_server import FakeHomeserver, Recorded
from tests.ops.netfixtures import Certs, json_answer
from tests.security.hostile_server import PrefixRoutes
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer, start_with_politburo, wait_for

PASSWORD = "correct horse battery"
HOUR_MS = 3600 * 1000


@dataclass
class Api:
    dagma: LiveServer
    base: str
    token: str
    peer: FakeHomeserver
    peer_name: str
    room_id: str

    def call(self, method: str, path: str, token: str | None = "", **params: str) -> httpx.Response:
        auth = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {auth}"} if auth else {}
        body: dict[str, Any] | None = {} if method == "POST" else None
        return httpx.request(method, self.base + path, headers=headers, json=body, params=params or None)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:5432/{self.dagma.db_name}", autocommit=True
        ) as c:
            c.execute(sql, params)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    work = tmp_path_factory.mktemp("destinations")
    certs = Certs(work / "certs")
    peer = FakeHomeserver(certs.issue("peer", "localhost", "127.0.0.1"))
    peer.routes = PrefixRoutes({"/_matrix/federation/v1/send/": lambda _: json_answer({"pdus": {}})})
    peer_name = f"localhost:{peer.port}"
    # No broker: `serve all` runs the federation sender in-process, as the quick start does.
    dagma = LiveServer(
        work / "dagma", redis=False,
        config={"federation_custom_ca_list": [str(certs.ca_path)], "ip_range_whitelist": ["127.0.0.0/8", "::1/128"]},
    )  # fmt: skip
    politburo = start_with_politburo(dagma)
    try:
        pw = dagma.workdir / "pw"
        pw.write_text(PASSWORD + "\n")
        assert dagma.manage("register_user", "root", "--admin", "--password-file", str(pw)).returncode == 0
        root = MatrixClient(dagma.base_url)
        login = root.post("/login", {"type": "m.login.password", "password": PASSWORD,
                                     "identifier": {"type": "m.id.user", "user": "root"}}, auth=False)  # fmt: skip
        root.access_token = login.json["access_token"]
        room_id = root.create_room(name="shared with the peer")
        yield Api(dagma, politburo.base_url, login.json["access_token"], peer, peer_name, room_id)
    finally:
        politburo.stop()
        dagma.destroy()
        peer.close()


def _fail_destination(api: Api) -> tuple[int, str]:
    """The peer as the sender leaves it after failures: backing off for an hour, one PDU queued
    (the room's newest event), the room shared with it. Returns (failing since, event ID)."""
    (room_nid,) = api.dagma.query("SELECT id FROM rooms WHERE room_id = %s", (api.room_id,))[0]
    event_nid, event_id = api.dagma.query(
        "SELECT id, event_id FROM events WHERE room_id = %s ORDER BY stream_ordering DESC LIMIT 1",
        (room_nid,),
    )[0]
    now = int(api.dagma.query("SELECT (extract(epoch from now()) * 1000)::bigint")[0][0])
    since = now - 2 * HOUR_MS
    api.execute(
        "INSERT INTO federation_destinations (server_name, next_attempt_ts, failures, last_success_ts, "
        "last_failure_ts, failing_since_ts, last_error, dead_lettered, txn_id, txn_counter, lease_owner, "
        "lease_expires_ts) VALUES (%s, %s, 5, NULL, %s, %s, 'ConnectError: refused', 0, '', 0, '', 0)",
        (api.peer_name, now + HOUR_MS, now - 60_000, since),
    )
    api.execute(
        "INSERT INTO federation_outbox (destination, event_id, room_id, created_ts, txn_id, dead_letter) "
        "VALUES (%s, %s, %s, %s, '', NULL)",
        (api.peer_name, event_nid, room_nid, since),
    )
    api.execute(
        "INSERT INTO room_servers (room_id, server_name, joined_count) VALUES (%s, %s, 1)",
        (room_nid, api.peer_name),
    )
    api.execute(
        "INSERT INTO federation_destinations (server_name, next_attempt_ts, failures, last_success_ts, "
        "last_error, dead_lettered, txn_id, txn_counter, lease_owner, lease_expires_ts) "
        "VALUES ('zz-healthy.example', 0, 0, %s, '', 0, '', 3, '', 0)",
        (now,),
    )
    return since, event_id


def test_destinations_their_rooms_and_reset_connection(api: Api) -> None:
    since, event_id = _fail_destination(api)
    path = "/_synapse/admin/v1/federation/destinations"

    listed = api.call("GET", path)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["total"] == 2 and "next_token" not in body
    peer, healthy = body["destinations"]
    assert peer["destination"] == api.peer_name
    assert peer["failure_ts"] == since
    assert peer["retry_last_ts"] > since and peer["retry_interval"] == HOUR_MS + 60_000
    assert peer["last_successful_stream_ordering"] is None
    assert (peer["queued_pdus"], peer["queued_edus"], peer["oldest_queued_ts"]) == (1, 0, since)
    assert peer["last_error"] == "ConnectError: refused" and peer["next_attempt_ts"] > 0
    assert healthy == {**healthy, "destination": "zz-healthy.example", "retry_last_ts": 0, "retry_interval": 0,
                       "failure_ts": None, "queued_pdus": 0}  # fmt: skip

    # Synapse's paging, filter and ordering.
    page = api.call("GET", path, limit="1").json()
    assert [d["destination"] for d in page["destinations"]] == [api.peer_name] and page["next_token"] == "1"
    assert [d["destination"] for d in api.call("GET", path, dir="b").json()["destinations"]] == [
        "zz-healthy.example", api.peer_name,
    ]  # fmt: skip
    assert api.call("GET", path, destination="healthy").json()["total"] == 1
    assert api.call("GET", path, order_by="failure_ts").status_code == 200
    bad = api.call("GET", path, order_by="nonsense")
    assert bad.status_code == 400 and bad.json()["errcode"] == "M_INVALID_PARAM"
    assert api.call("GET", path, dir="x").status_code == 400

    one = api.call("GET", f"{path}/{q(api.peer_name)}")
    assert one.status_code == 200 and one.json() == peer
    missing = api.call("GET", f"{path}/nowhere.example")
    assert missing.status_code == 404 and missing.json()["errcode"] == "M_NOT_FOUND"

    rooms = api.call("GET", f"{path}/{q(api.peer_name)}/rooms").json()
    assert rooms["total"] == 1 and rooms["rooms"][0]["room_id"] == api.room_id
    assert rooms["rooms"][0]["stream_ordering"] > 0
    assert api.call("GET", f"{path}/nowhere.example/rooms").status_code == 404

    # Only server admins.
    user = MatrixClient(api.dagma.base_url).register()
    denied = api.call("POST", f"{path}/{q(api.peer_name)}/reset_connection", token=user.access_token)
    assert denied.status_code == 403 and denied.json()["errcode"] == "M_FORBIDDEN"
    assert api.call("GET", path, token=None).status_code == 401

    # Retry now: the back-off ends and the sender delivers the queued PDU to the peer at once
    # (an hour before its back-off would have).
    reset = api.call("POST", f"{path}/{q(api.peer_name)}/reset_connection")
    assert reset.status_code == 200 and reset.json() == {}

    (version,) = api.dagma.query("SELECT room_version FROM rooms WHERE room_id = %s", (api.room_id,))[0]

    def delivered() -> bool:
        sent = [r for r in api.peer.requests if r.path.startswith("/_matrix/federation/v1/send/")]
        return any(event_id in _pdu_ids(r, version) for r in sent)

    wait_for(delivered, "the queued PDU delivered to the peer after reset_connection", timeout=30)
    after = wait_for(
        lambda: (d := api.call("GET", f"{path}/{q(api.peer_name)}").json())["queued_pdus"] == 0 and d,
        "the outbox row deleted after the peer's 200",
    )
    assert (
        after["failure_ts"] is None and after["retry_last_ts"] == 0 and after["last_success_ts"] is not None
    )
    audit = api.dagma.query(
        "SELECT actor, via, target, counts FROM audit_log WHERE action = 'federation.reset_connection'"
    )
    assert [(a[0], a[1], a[2]) for a in audit] == [(f"@root:{api.dagma.server_name}", "api", api.peer_name)]

    # Nothing to reset any more: Synapse's 400.
    again = api.call("POST", f"{path}/{q(api.peer_name)}/reset_connection")
    assert again.status_code == 400
    assert again.json()["error"] == "The retry timing does not need to be reset for this destination."
    assert api.call("POST", f"{path}/nowhere.example/reset_connection").status_code == 404


def _pdu_ids(request: Recorded, room_version: str) -> list[str]:
    """The event IDs of the PDUs a ``/send`` carried (room versions 3+: computed from the PDU)."""
    from dagcore.protocol.hashing import compute_event_id
    from dagcore.protocol.room_versions import get_room_version

    try:
        pdus = json.loads(request.body).get("pdus", [])
    except ValueError:
        return []
    return [compute_event_id(p, get_room_version(room_version)) for p in pdus]

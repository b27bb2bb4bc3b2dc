"""Rotating and revoking our signing key with running servers: ``manage.py signing_key rotate``
and ``manage.py compromised`` against two Dagmas over TLS sharing a room. What a server
publishes is read from its key endpoint; what the other accepts, through its ``/send`` answer
and its client API."""

from __future__ import annotations

import json
import secrets
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from dagcore.protocol import signing
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.request_auth import authorization_header
from dagcore.protocol.room_versions import get_room_version
from tests.federation.certs import TestCA
from tests.federation.conftest import federating_dagma
from tests.support.client import MatrixClient, q
from tests.support.events import RemoteServer
from tests.support.live import LiveServer, wait_for

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("signingkeys")
    ca = TestCA(root / "ca")
    # No broker: each ``serve all`` sends from its in-process runner.
    a = federating_dagma(ca, root / "a", stem="a", redis=False)
    b = federating_dagma(ca, root / "b", stem="b", redis=False)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(LiveServer.start, (a, b)))
        alice = MatrixClient(a.base_url, timeout=60).register()
        bob = MatrixClient(b.base_url, timeout=60).register()
        [(started,)] = a.query("SELECT (extract(epoch FROM now()) * 1000)::bigint")
        room = alice.create_room(preset="public_chat")
        bob.post(f"/join/{q(room)}", params={"server_name": a.server_name})
        yield {"a": a, "b": b, "ca": ca, "alice": alice, "bob": bob, "room": room, "started": int(started)}
    finally:
        a.destroy()
        b.destroy()


def published(server: LiveServer, ca: TestCA) -> dict[str, Any]:
    r = httpx.get(
        f"{server.federation_url}/_matrix/key/v2/server",
        verify=ssl.create_default_context(cafile=str(ca.cert_path)),
        timeout=10,
    )
    r.raise_for_status()
    return dict(r.json())


def last_json(done: Any) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def own_key(server: LiveServer, key_id: str) -> signing.SigningKey:
    [(seed,)] = server.query("SELECT seed FROM server_signing_keys WHERE key_id = %s", (key_id,))
    return signing.decode_signing_key_base64(key_id, seed)


def sees(client: MatrixClient, room: str, event_id: str) -> bool:
    return client.get(f"/rooms/{q(room)}/event/{q(event_id)}", expect=None).status == 200


def test_a_rotation_reaches_the_running_embassy_and_the_other_server_verifies_with_the_new_key(pair) -> None:
    a, b, ca, alice, bob, room = (pair[k] for k in ("a", "b", "ca", "alice", "bob", "room"))
    [old_id] = published(a, ca)["verify_keys"]
    rotated = last_json(a.manage("signing_key", "rotate", "--json"))
    new_id = rotated["new_key_id"]
    assert rotated["expired"] == [old_id] and new_id != old_id

    # The running process switches without a restart (it re-reads the keys every few seconds).
    answer = wait_for(
        lambda: (p := published(a, ca)) and new_id in p["verify_keys"] and p, "the new key published"
    )
    assert list(answer["verify_keys"]) == [new_id]
    assert answer["old_verify_keys"][old_id]["expired_ts"] == rotated["expired_ts"]
    assert set(answer["signatures"][a.server_name]) == {new_id}

    event_id = alice.send(room, "after the rotation")
    wait_for(lambda: sees(bob, room, event_id), "the event on the other server", timeout=45)
    [(pdu,)] = b.query("SELECT json FROM events WHERE event_id = %s", (event_id,))
    assert set(json.loads(pdu)["signatures"][a.server_name]) == {new_id}

    listing = last_json(a.manage("signing_key", "list", "--json"))
    states = {k["key_id"]: (k["state"], k.get("published", "")) for k in listing["keys"]}
    assert states[new_id] == ("current", "verify_keys"), listing.get("published")
    assert states[old_id][0] == "old" and states[old_id][1].startswith("old_verify_keys")


def test_after_a_compromise_old_key_events_dated_later_are_refused_and_every_token_is_revoked(pair) -> None:
    a, b, ca, alice, bob, room = (pair[k] for k in ("a", "b", "ca", "alice", "bob", "room"))
    since = pair["started"]
    [stolen_id] = published(a, ca)["verify_keys"]
    stolen = own_key(a, stolen_id)  # what the attacker holds

    preview = last_json(a.manage("compromised", "--since", str(since), "--dry-run", "--json"))
    assert preview["dry_run"] and preview["new_key_id"] is None and preview["access_tokens"] >= 1
    assert alice.get("/account/whoami", expect=None).status == 200  # nothing changed yet

    report = last_json(a.manage("compromised", "--since", str(since), "--json"))
    assert report["expired"] == [stolen_id] and report["access_tokens"] == preview["access_tokens"]
    assert {(e["sender"], e["room_id"]) for e in report["events"]} >= {(alice.user_id, room)}
    assert any("old_verify_keys" in step for step in report["checklist"])
    assert [b.server_name, 1] in report["servers"]
    assert any(b.server_name in step for step in report["checklist"])  # whom to ask to drop the key
    r = alice.get("/account/whoami", expect=None)
    assert r.status == 401 and r.json["errcode"] == "M_UNKNOWN_TOKEN"
    answer = wait_for(
        lambda: (p := published(a, ca)) and report["new_key_id"] in p["verify_keys"] and p, "new key"
    )
    assert answer["old_verify_keys"][stolen_id]["expired_ts"] == since
    assert a.query("SELECT seed FROM server_signing_keys WHERE key_id = %s", (stolen_id,)) == [(None,)]

    # The other server's admin drops its cached keys of this server (a step of the checklist);
    # the attacker then sends two events signed with the stolen key, before and after TIME.
    b.query("DELETE FROM remote_server_keys WHERE server_name = %s RETURNING id", (a.server_name,))
    attacker = RemoteServer(a.server_name)
    attacker.key = stolen
    [(version_id, extremities)] = b.query(
        "SELECT room_version, forward_extremities FROM rooms WHERE room_id = %s", (room,)
    )
    version = get_room_version(version_id)
    prev = [e[1] for e in json.loads(extremities)]
    depth = max(e[2] for e in json.loads(extremities)) + 1
    skip_create = version.room_id_is_create_event_hash
    auth = [
        row[0]
        for row in b.query(
            "SELECT e.event_id FROM current_state_events c JOIN events e ON e.id = c.event_id "
            "JOIN rooms r ON r.id = c.room_id WHERE r.room_id = %s AND ((c.type = 'm.room.create') "
            "OR (c.type = 'm.room.power_levels') OR (c.type = 'm.room.member' AND c.state_key = %s))",
            (room, alice.user_id),
        )
    ]
    if skip_create:  # rooms v12+: the create event is not listed in auth_events
        [(create_id,)] = b.query(
            "SELECT e.event_id FROM current_state_events c JOIN events e ON e.id = c.event_id "
            "JOIN rooms r ON r.id = c.room_id WHERE r.room_id = %s AND c.type = 'm.room.create'",
            (room,),
        )
        auth.remove(create_id)

    def forged(ts: int) -> Any:
        return attacker.event(version, room_id=room, sender=alice.user_id or "", event_type="m.room.message",
                              content={"msgtype": "m.text", "body": f"forged at {ts}"}, prev_events=prev,
                              auth_events=auth, depth=depth, origin_server_ts=ts)  # fmt: skip

    later, earlier = forged(since + 1000), forged(since - 1000)
    body = {"origin": a.server_name, "origin_server_ts": since + 2000,
            "pdus": [later.pdu, earlier.pdu]}  # fmt: skip
    path = f"/_matrix/federation/v1/send/{secrets.token_hex(6)}"
    header = authorization_header(method="PUT", uri=path, origin=a.server_name, destination=b.server_name,
                                  signing_key=own_key(a, report["new_key_id"]), content=body)  # fmt: skip
    r = httpx.put(b.federation_url + path, content=encode_canonical_json(body), verify=ssl.create_default_context(cafile=str(ca.cert_path)),
                  headers={"Authorization": header, "Content-Type": "application/json"}, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    verdicts = r.json()["pdus"]
    assert "error" in verdicts[later.event_id] and "error" not in verdicts[earlier.event_id]
    wait_for(lambda: sees(bob, room, earlier.event_id), "the event dated before TIME accepted")
    assert not sees(bob, room, later.event_id)

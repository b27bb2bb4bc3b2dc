"""The federation attack suite: a hostile homeserver attacks a live Dagma over TLS.

The hostile server (``hostile_server.HostileServer``) has its own signing key, serves its keys
over TLS and joined a room of Dagma's for real (make_join/send_join). Each attack is sent beside
a valid control of the same shape (accepted), must be refused as the spec says, and leaves
nothing in the room's state or timeline as Dagma's local user sees them (``/sync``, ``/state``,
``/messages``) nor in Dagma's database. After each family a sentinel PDU must still be accepted
and reach the local user's ``/sync``.

Spec: https://spec.matrix.org/v1.19/server-server-api/ (#checks-performed-on-receipt-of-a-pdu,
#transactions, #joining-rooms, #inviting-to-a-room, #retrieving-events, #backfilling-and-
retrieving-missing-events, #resolving-server-names).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dagcore.protocol import signing
from tests.federation.certs import TestCA
from tests.security.hostile_server import DAY_MS, HostileServer, RoomView, event_id, now_ms, q
from tests.support.client import MatrixClient
from tests.support.live import LiveServer

pytestmark = pytest.mark.live

#: Dagma may reach the hostile servers (127.0.0.1) and nothing else on loopback: the
#: "internal" listener of the SSRF cases sits on 127.0.0.2, which the default blacklist covers.
WHITELIST = ["127.0.0.1/32"]


@dataclass
class World:
    dagma: LiveServer
    ca: TestCA
    hostile: HostileServer
    #: A bystander server whose key the hostile one misuses.
    other: HostileServer
    #: A server whose key answers say they expired an hour ago (``valid_until_ts``); its
    #: user's join is relayed by the hostile server.
    stale: HostileServer
    alice: MatrixClient
    room: RoomView
    mallory: str
    since: str

    def send(self, pdus: list[dict[str, Any]] = (), edus: list[dict[str, Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        status, body = self.hostile.send(self.dagma, self.ca, pdus, edus)
        assert status == 200, body
        return body["pdus"]

    def message(
        self, body: str, *, sender: str | None = None, room: RoomView | None = None, **kw: Any
    ) -> dict[str, Any]:
        room = room or self.room
        sender = sender or self.mallory
        tips, depth = room.tips()
        fields: dict[str, Any] = {
            "room_id": room.room_id,
            "sender": sender,
            "event_type": "m.room.message",
            "content": {"msgtype": "m.text", "body": body},
            "prev_events": tips,
            "auth_events": room.auth_for(sender, "m.room.message"),
            "depth": depth,
        }
        fields.update(kw)
        return self.hostile.pdu(room.version, **fields)

    def state_event(
        self,
        event_type: str,
        state_key: str,
        content: dict[str, Any],
        *,
        sender: str | None = None,
        room: RoomView | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        room = room or self.room
        sender = sender or self.mallory
        tips, depth = room.tips()
        fields: dict[str, Any] = {
            "room_id": room.room_id,
            "sender": sender,
            "event_type": event_type,
            "state_key": state_key,
            "content": content,
            "prev_events": tips,
            "auth_events": room.auth_for(sender, event_type, state_key, membership=content.get("membership")),
            "depth": depth,
        }
        fields.update(kw)
        return self.hostile.pdu(room.version, **fields)

    def eid(self, pdu: dict[str, Any], room: RoomView | None = None) -> str:
        return event_id(pdu, (room or self.room).version)

    # -- what the local user and the database show ---------------------------------------

    def alice_sees(self, eid: str, room: RoomView | None = None) -> bool:
        r = self.alice.get(f"/rooms/{q((room or self.room).room_id)}/event/{q(eid)}", expect=None)
        return r.status == 200

    def assert_nowhere(self, mark: str, room: RoomView | None = None) -> None:
        """Nothing carrying ``mark`` in the local user's view of the room nor in the database
        (a rejected event may be kept, marked rejected, as the spec allows: never served)."""
        room_id = (room or self.room).room_id
        msgs = self.alice.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 500}).json
        state = self.alice.get(f"/rooms/{q(room_id)}/state").json
        sync = self.alice.sync(since=self.since)
        for what, dump in (("/messages", msgs), ("/state", state), ("/sync", sync)):
            assert mark not in json.dumps(dump), f"{mark} in the local user's {what}"
        rows = self.dagma.query(
            "SELECT event_id, rejected_reason, outlier, soft_failed FROM events WHERE json LIKE %s",
            (f"%{mark}%",),
        )
        served = [r for r in rows if r[1] is None]
        assert not served, f"{mark} stored as a live event: {served}"
        staged = self.dagma.query(
            "SELECT count(*) FROM federation_inbound_pdus WHERE pdu::text LIKE %s", (f"%{mark}%",)
        )
        assert staged == [(0,)], f"{mark} still staged"

    def sentinel(self) -> None:
        """A valid PDU after a family of attacks: accepted, and on the local user's /sync."""
        body = f"sentinel-{secrets.token_hex(4)}"
        pdu = self.message(body)
        assert self.send([pdu]) == {self.eid(pdu): {}}
        sync = self.alice.sync(since=self.since)
        timeline = sync["rooms"]["join"][self.room.room_id]["timeline"]["events"]
        assert body in [e["content"].get("body") for e in timeline], "the sentinel did not reach /sync"
        self.since = sync["next_batch"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("fedattack")
    ca = TestCA(root / "ca")
    cert = ca.issue("localhost", "127.0.0.1", stem="dagma")
    hostile = HostileServer(ca, "hostile")
    other = HostileServer(ca, "other")
    stale = HostileServer(ca, "stale")
    stale.valid_until_ts = lambda: now_ms() - 3600_000
    dagma = LiveServer(
        root / "dagma",
        federation_tls=(cert.cert_path, cert.key_path),
        redis=False,
        config={"federation_custom_ca_list": [str(ca.cert_path)], "ip_range_whitelist": WHITELIST},
    )
    alice: MatrixClient | None = None
    try:
        dagma.start()
        alice = MatrixClient(dagma.base_url).register("alice")
        room_id = alice.create_room(preset="public_chat", room_version="11")
        mallory = f"@mallory:{hostile.server_name}"
        hostile.do_membership(dagma, ca, room_id, mallory)
        world = World(
            dagma=dagma, ca=ca, hostile=hostile, other=other, stale=stale,
            alice=alice, room=RoomView(dagma, room_id), mallory=mallory, since=alice.sync()["next_batch"],
        )  # fmt: skip
        yield world
    finally:
        if alice is not None:
            alice.close()
        dagma.destroy()
        for server in (hostile, other, stale):
            server.close()


# =========================================================================== authenticity


def test_authenticity(world: World) -> None:
    """Spec "Checks performed on receipt of a PDU" steps 2-3: a PDU whose signatures do not
    verify with the sender's server's keys (valid at its ``origin_server_ts``) is dropped; one
    whose content hash is wrong is stored redacted."""
    w = world
    ok = w.message("control: well signed")
    assert w.send([ok]) == {w.eid(ok): {}}
    assert w.alice_sees(w.eid(ok))

    def dropped(pdu: dict[str, Any], mark: str) -> None:
        verdict = w.send([pdu])[w.eid(pdu)]
        assert verdict.get("error", "").startswith("dropped"), verdict
        assert not w.alice_sees(w.eid(pdu))
        w.assert_nowhere(mark)

    # No signatures at all.
    mark = f"unsigned-{secrets.token_hex(4)}"
    dropped(w.message(mark, signed=False), mark)

    # A signature that does not verify: a signed field changed after signing.
    mark = f"badsig-{secrets.token_hex(4)}"
    pdu = w.message(mark)
    pdu["origin_server_ts"] += 1
    dropped(pdu, mark)

    # Another server's key presented as the sender's server's (its key ID is not one of ours).
    mark = f"otherkey-{secrets.token_hex(4)}"
    dropped(w.message(mark, key=w.other.key), mark)

    # Signed only by a server that is not the sender's (the bystander signs for mallory).
    mark = f"wrongserver-{secrets.token_hex(4)}"
    dropped(w.message(mark, server_name=w.other.server_name, key=w.other.key), mark)

    # A retired key (old_verify_keys, expired a day ago): fine for an event from before it
    # expired (control), refused for one sent after.
    retired = signing.generate_signing_key()
    w.hostile.old_keys[signing.key_id(retired)] = (retired, now_ms() - DAY_MS)
    old = w.message("control: signed before the key was retired", key=retired,
                    origin_server_ts=now_ms() - 2 * DAY_MS)  # fmt: skip
    assert w.send([old]) == {w.eid(old): {}}
    mark = f"retired-{secrets.token_hex(4)}"
    dropped(w.message(mark, key=retired), mark)

    # A server whose key answer is valid only until an hour ago (valid_until_ts): its user's
    # join from before then is accepted (relayed by the hostile server), a message since is not.
    eve = f"@eve:{w.stale.server_name}"
    signer = {"server_name": w.stale.server_name, "key": w.stale.key}
    join = w.state_event("m.room.member", eve, {"membership": "join"}, sender=eve,
                         origin_server_ts=now_ms() - 2 * 3600_000, **signer)  # fmt: skip
    assert w.send([join]) == {w.eid(join): {}}
    mark = f"stale-{secrets.token_hex(4)}"
    dropped(w.message(mark, sender=eve, **signer), mark)

    # The request itself: unsigned, or signed with another server's key, is refused (401).
    for kwargs in ({"sign": False}, {"key": w.other.key}):
        mark = f"request-{secrets.token_hex(4)}"
        pdu = w.message(mark)
        body = {"origin": w.hostile.server_name, "origin_server_ts": now_ms(), "pdus": [pdu]}
        status, answer = w.hostile.request(
            w.dagma, w.ca, "PUT", f"/_matrix/federation/v1/send/r{secrets.token_hex(4)}", body, **kwargs
        )
        assert status == 401 and answer["errcode"] == "M_UNAUTHORIZED", (status, answer)
        w.assert_nowhere(mark)

    # A content hash that does not match: the event is kept redacted (its content gone).
    mark = f"badhash-{secrets.token_hex(4)}"
    pdu = w.message("will be replaced")
    pdu["content"] = {"msgtype": "m.text", "body": mark}
    verdict = w.send([pdu])[w.eid(pdu)]
    assert "redacted" in verdict.get("error", ""), verdict
    seen = w.alice.get(f"/rooms/{q(w.room.room_id)}/event/{q(w.eid(pdu))}").json
    assert seen["content"] == {}, seen
    w.assert_nowhere(mark)

    w.sentinel()

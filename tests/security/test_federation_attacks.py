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
        (a rejected or soft-failed event may be kept, marked so, as the spec allows: never
        served to clients nor part of the state)."""
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
        served = [r for r in rows if r[1] is None and not r[3]]
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


# =========================================================================== authorisation and state resets


def _verdict(w: World, pdu: dict[str, Any], room: RoomView | None = None) -> str:
    return w.send([pdu]).get(w.eid(pdu, room), {}).get("error", "")


def _resolve_with_dag_cli(w: World, room: RoomView, state_sets: list[dict[tuple[str, str], str]]) -> dict:
    """What ``manage.py dag resolve`` says the state after these forks is."""
    events = []
    for event_id_, raw in w.dagma.query(
        "SELECT e.event_id, e.json FROM events e JOIN rooms r ON r.id = e.room_id WHERE r.room_id = %s",
        (room.room_id,),
    ):
        events.append({**json.loads(raw), "event_id": event_id_})
    data = {
        "room_version": room.version.identifier,
        "events": events,
        "state_sets": [[[t, k, e] for (t, k), e in s.items()] for s in state_sets],
    }
    done = w.dagma.manage("dag", "resolve", "-", input=json.dumps(data).encode())
    assert done.returncode == 0, done.stderr.decode()
    return {(t, k): e for t, k, e in json.loads(done.stdout)["state"]}


def _membership(room: RoomView, user_id: str) -> str | None:
    content = room.state_content("m.room.member", user_id)
    return content.get("membership") if content else None


def test_authorisation_and_state_resets(world: World) -> None:
    """Spec receipt checks 4-6: an event is rejected when its auth events do not allow it (or
    are not the ones the rules select), rejected when the state before it does not, and
    soft-failed when the room's current state does not; a fork never resets state further
    than state resolution says (Dagma's state equals ``manage.py dag resolve`` on the forks)."""
    w, room = world, world.room
    alice = w.alice

    # -- auth events the event should not cite --------------------------------------------
    ordinary = w.message("control: an ordinary message")
    assert _verdict(w, ordinary) == ""
    cited = {
        "a message as an auth event": [w.eid(ordinary)],
        "the join rules, which a message does not need": [room.state()[("m.room.join_rules", "")]],
        "another user's membership": [room.state()[("m.room.member", alice.user_id)]],
    }
    for why, extra in cited.items():
        mark = f"badauth-{secrets.token_hex(4)}"
        pdu = w.message(mark, auth_events=room.auth_for(w.mallory, "m.room.message") + extra)
        assert _verdict(w, pdu).startswith("rejected"), why
        w.assert_nowhere(mark)
    # Missing the sender's own membership: rejected too.
    mark = f"noauth-{secrets.token_hex(4)}"
    state = room.state()
    pdu = w.message(mark, auth_events=[state[("m.room.create", "")], state[("m.room.power_levels", "")]])
    assert _verdict(w, pdu).startswith("rejected")
    w.assert_nowhere(mark)

    # -- a fork that tries to reset the power levels ----------------------------------------
    pl_path = f"/rooms/{q(room.room_id)}/state/m.room.power_levels"
    levels = room.state_content("m.room.power_levels")
    assert levels is not None
    # Mallory made a moderator allowed to change the power levels (below alice's 100).
    events = {**levels["events"], "m.room.power_levels": 50}
    alice.put(pl_path, {**levels, "events": events, "users": {**levels["users"], w.mallory: 50}})
    fork_tips, fork_depth = room.tips()
    fork_state = room.state()
    alice.put(pl_path, {**levels, "events": events, "users": {**levels["users"], w.mallory: 0}})
    demoted = room.state()
    mark = f"plreset-{secrets.token_hex(4)}"
    reset = w.state_event(
        "m.room.power_levels", "",
        {**levels, "events": events, "users": {alice.user_id: 100, w.mallory: 50}, "users_default": 50,
         "mark": mark},
        prev_events=fork_tips, depth=fork_depth,
        auth_events=[fork_state[("m.room.create", "")], fork_state[("m.room.power_levels", "")],
                     fork_state[("m.room.member", w.mallory)]],
    )  # fmt: skip
    # Allowed by its auth events and the state before it, not by the current state: soft-failed.
    assert _verdict(w, reset).startswith("soft-failed")
    # A message merging both forks makes Dagma resolve them.
    merge = w.message("merging the power level fork", prev_events=[*room.tips()[0], w.eid(reset)])
    assert _verdict(w, merge) == ""
    resolved = _resolve_with_dag_cli(
        w, room, [demoted, {**fork_state, ("m.room.power_levels", ""): w.eid(reset)}]
    )
    assert room.state() == resolved
    assert room.state()[("m.room.power_levels", "")] == demoted[("m.room.power_levels", "")]
    # Mallory has no power: a topic from her is refused.
    mark = f"topic-{secrets.token_hex(4)}"
    topic = w.state_event("m.room.topic", "", {"topic": mark})
    assert _verdict(w, topic).startswith("rejected")
    w.assert_nowhere(mark)

    # -- a banned user rejoining through a fork -------------------------------------------
    bob = f"@bob:{w.hostile.server_name}"
    w.hostile.do_membership(w.dagma, w.ca, room.room_id, bob)
    fork_tips, fork_depth = room.tips()
    fork_state = room.state()
    alice.post(f"/rooms/{q(room.room_id)}/ban", {"user_id": bob, "reason": "spam"})
    banned = room.state()
    assert _membership(room, bob) == "ban"
    mark = f"rejoin-{secrets.token_hex(4)}"
    rejoin = w.state_event(
        "m.room.member", bob, {"membership": "join", "displayname": mark}, sender=bob,
        prev_events=fork_tips, depth=fork_depth,
        auth_events=[fork_state[k] for k in (("m.room.create", ""), ("m.room.power_levels", ""),
                                             ("m.room.join_rules", ""), ("m.room.member", bob))],
    )  # fmt: skip
    assert _verdict(w, rejoin).startswith("soft-failed")
    merge = w.message("merging the ban fork", prev_events=[*room.tips()[0], w.eid(rejoin)])
    assert _verdict(w, merge) == ""
    resolved = _resolve_with_dag_cli(w, room, [banned, {**fork_state, ("m.room.member", bob): w.eid(rejoin)}])
    assert room.state() == resolved
    assert _membership(room, bob) == "ban"
    w.assert_nowhere(mark)
    # Bob, banned, cannot speak (his membership in the current state is the ban).
    mark = f"banned-{secrets.token_hex(4)}"
    speech = w.message(mark, sender=bob, auth_events=[fork_state[("m.room.create", "")],
                                                      room.state()[("m.room.power_levels", "")],
                                                      room.state()[("m.room.member", bob)]])  # fmt: skip
    assert _verdict(w, speech).startswith("rejected")
    w.assert_nowhere(mark)

    w.sentinel()


def test_v12_creators_keep_their_power(world: World) -> None:
    """Room v12 (spec rooms/v12 "Authorization rules"): the creator's power is infinite and not
    in ``users``; a member given 100 can run the room but neither demote nor kick the creator."""
    w = world
    alice = w.alice
    room_id = alice.create_room(preset="public_chat", room_version="12")
    w.hostile.do_membership(w.dagma, w.ca, room_id, w.mallory)
    room = RoomView(w.dagma, room_id)
    levels = room.state_content("m.room.power_levels")
    assert levels is not None and alice.user_id not in levels.get("users", {})
    alice.put(f"/rooms/{q(room_id)}/state/m.room.power_levels",
              {**levels, "users": {**levels.get("users", {}), w.mallory: 100}})  # fmt: skip
    topic = w.state_event("m.room.topic", "", {"topic": "control: mallory runs the room"}, room=room)
    assert _verdict(w, topic, room) == ""
    marks = {why: f"v12-{secrets.token_hex(4)}" for why in ("demote", "kick", "ban")}
    attacks = {
        "demote": w.state_event(
            "m.room.power_levels", "",
            {**levels, "users": {w.mallory: 100, alice.user_id: 0}, "mark": marks["demote"]}, room=room),
        "kick": w.state_event(
            "m.room.member", alice.user_id, {"membership": "leave", "reason": marks["kick"]}, room=room),
        "ban": w.state_event(
            "m.room.member", alice.user_id, {"membership": "ban", "reason": marks["ban"]}, room=room),
    }  # fmt: skip
    for why, pdu in attacks.items():
        assert _verdict(w, pdu, room).startswith("rejected"), why
        w.assert_nowhere(marks[why], room)
    assert _membership(room, alice.user_id) == "join"
    assert room.state_content("m.room.power_levels") == {
        **levels,
        "users": {**levels.get("users", {}), w.mallory: 100},
    }
    w.sentinel()

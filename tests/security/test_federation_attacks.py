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
from urllib.parse import unquote

import pytest

from dagcore.protocol import signing
from dagcore.protocol.hashing import add_content_hash
from tests.federation.certs import TestCA
from tests.security.hostile_server import (
    DAY_MS,
    DagmaDb,
    HostileServer,
    InternalListener,
    RoomView,
    WellKnownServer,
    event_id,
    now_ms,
    q,
)
from tests.support.client import MatrixClient
from tests.support.live import LiveServer

pytestmark = pytest.mark.live

#: Dagma may reach the hostile servers (127.0.0.1) and nothing else on loopback: the
#: "internal" listener of the SSRF cases sits on 127.0.0.2, which the default blacklist covers.
WHITELIST = ["127.0.0.1/32"]


@dataclass
class World:
    dagma: LiveServer
    db: DagmaDb
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

    @property
    def alice_id(self) -> str:
        assert self.alice.user_id is not None
        return self.alice.user_id

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
        rows = self.db.query(
            "SELECT event_id, rejected_reason, outlier, soft_failed FROM events WHERE json LIKE %s",
            (f"%{mark}%",),
        )
        served = [r for r in rows if r[1] is None and not r[3]]
        assert not served, f"{mark} stored as a live event: {served}"
        staged = self.db.query(
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
    db: DagmaDb | None = None
    try:
        dagma.start()
        alice = MatrixClient(dagma.base_url).register("alice")
        room_id = alice.create_room(preset="public_chat", room_version="11")
        mallory = f"@mallory:{hostile.server_name}"
        hostile.do_membership(dagma, ca, room_id, mallory)
        db = DagmaDb(dagma)
        world = World(
            dagma=dagma, db=db, ca=ca, hostile=hostile, other=other, stale=stale,
            alice=alice, room=RoomView(db, room_id), mallory=mallory, since=alice.sync()["next_batch"],
        )  # fmt: skip
        yield world
    finally:
        if alice is not None:
            alice.close()
        if db is not None:
            db.close()
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
    signer: dict[str, Any] = {"server_name": w.stale.server_name, "key": w.stale.key}
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
    for event_id_, raw in w.db.query(
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
        "another user's membership": [room.state()[("m.room.member", w.alice_id)]],
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
        {**levels, "events": events, "users": {w.alice_id: 100, w.mallory: 50}, "users_default": 50,
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
    room = RoomView(w.db, room_id)
    levels = room.state_content("m.room.power_levels")
    assert levels is not None and w.alice_id not in levels.get("users", {})
    alice.put(f"/rooms/{q(room_id)}/state/m.room.power_levels",
              {**levels, "users": {**levels.get("users", {}), w.mallory: 100}})  # fmt: skip
    topic = w.state_event("m.room.topic", "", {"topic": "control: mallory runs the room"}, room=room)
    assert _verdict(w, topic, room) == ""
    marks = {why: f"v12-{secrets.token_hex(4)}" for why in ("demote", "kick", "ban")}
    attacks = {
        "demote": w.state_event(
            "m.room.power_levels", "",
            {**levels, "users": {w.mallory: 100, w.alice_id: 0}, "mark": marks["demote"]}, room=room),
        "kick": w.state_event(
            "m.room.member", w.alice_id, {"membership": "leave", "reason": marks["kick"]}, room=room),
        "ban": w.state_event(
            "m.room.member", w.alice_id, {"membership": "ban", "reason": marks["ban"]}, room=room),
    }  # fmt: skip
    for why, pdu in attacks.items():
        assert _verdict(w, pdu, room).startswith("rejected"), why
        w.assert_nowhere(marks[why], room)
    assert _membership(room, w.alice_id) == "join"
    assert room.state_content("m.room.power_levels") == {
        **levels,
        "users": {**levels.get("users", {}), w.mallory: 100},
    }
    w.sentinel()


# =========================================================================== path/body disagreement


def _template(w: World, room_id: str, user_id: str, membership: str = "join") -> dict[str, Any]:
    status, answer = w.hostile.request(
        w.dagma, w.ca, "GET",
        f"/_matrix/federation/v1/make_{membership}/{q(room_id)}/{q(user_id)}?ver=11&ver=12",
    )  # fmt: skip
    assert status == 200, answer
    return answer["event"]


def _put(w: World, path: str, body: Any) -> tuple[int, Any]:
    return w.hostile.request(w.dagma, w.ca, "PUT", path, body)


def _refused(answer: tuple[int, Any], status: int, errcode: str) -> None:
    assert answer[0] == status and answer[1].get("errcode") == errcode, answer


def test_path_body_disagreement(world: World) -> None:
    """Spec #joining-rooms, #leaving-rooms-rejecting-invites, #inviting-to-a-room,
    #knocking-upon-a-room: the body is the event the path names, in the room the path names,
    about the requesting server's own user (an invite: by its user, of one of ours). EDUs about
    another server's users are dropped, the rest of the transaction still handled."""
    w, room = world, world.room
    other_room_id = w.alice.create_room(preset="public_chat", room_version="11")
    version = room.version
    carl = f"@carl:{w.hostile.server_name}"

    def signed(template: dict[str, Any], **changes: Any) -> dict[str, Any]:
        return w.hostile.sign(
            add_content_hash({**template, "origin_server_ts": now_ms(), **changes}), version
        )

    # -- send_join ----------------------------------------------------------------------
    join = signed(_template(w, room.room_id, carl))
    in_other_room = signed(_template(w, other_room_id, carl))
    for path_room, body, status, code in [
        # The body's room is another room (which we are in too).
        (room.room_id, in_other_room, 400, "M_BAD_JSON"),
        (other_room_id, join, 400, "M_BAD_JSON"),
    ]:
        _refused(
            _put(w, f"/_matrix/federation/v2/send_join/{q(path_room)}/{q(w.eid(body))}", body), status, code
        )
    # The path names another event than the body.
    _refused(_put(w, f"/_matrix/federation/v2/send_join/{q(room.room_id)}/{q(w.eid(in_other_room))}", join),
             400, "M_BAD_JSON")  # fmt: skip
    # A join of another server's user (signed by us as origin, as a relay would).
    eve = f"@eve:{w.other.server_name}"
    for_eve = signed(_template(w, room.room_id, carl), sender=eve, state_key=eve)
    _refused(_put(w, f"/_matrix/federation/v2/send_join/{q(room.room_id)}/{q(w.eid(for_eve))}", for_eve),
             403, "M_FORBIDDEN")  # fmt: skip
    # A "join" whose state_key is a local user (joining alice on her behalf).
    for_alice = signed(_template(w, room.room_id, carl), state_key=w.alice_id)
    _refused(_put(w, f"/_matrix/federation/v2/send_join/{q(room.room_id)}/{q(w.eid(for_alice))}", for_alice),
             400, "M_BAD_JSON")  # fmt: skip
    assert _membership(room, carl) is None and _membership(room, eve) is None
    # The control: the same join, where the path says.
    status, answer = _put(w, f"/_matrix/federation/v2/send_join/{q(room.room_id)}/{q(w.eid(join))}", join)
    assert status == 200, answer
    assert _membership(room, carl) == "join"
    assert _membership(RoomView(w.db, other_room_id), carl) is None

    # -- send_leave ---------------------------------------------------------------------
    leave = signed(_template(w, room.room_id, carl, "leave"))
    _refused(_put(w, f"/_matrix/federation/v2/send_leave/{q(other_room_id)}/{q(w.eid(leave))}", leave),
             400, "M_BAD_JSON")  # fmt: skip
    alice_leaves = signed(_template(w, room.room_id, carl, "leave"), sender=w.mallory,
                          state_key=w.alice_id)  # fmt: skip
    _refused(_put(w, f"/_matrix/federation/v2/send_leave/{q(room.room_id)}/{q(w.eid(alice_leaves))}",
                  alice_leaves), 400, "M_BAD_JSON")  # fmt: skip
    assert _membership(room, w.alice_id) == "join" and _membership(room, carl) == "join"
    status, answer = _put(w, f"/_matrix/federation/v2/send_leave/{q(room.room_id)}/{q(w.eid(leave))}", leave)
    assert status == 200, answer
    assert _membership(room, carl) == "leave"

    # -- send_knock (another room, another event) ----------------------------------------
    knock = signed({**_template(w, room.room_id, carl), "content": {"membership": "knock"}})
    _refused(_put(w, f"/_matrix/federation/v1/send_knock/{q(other_room_id)}/{q(w.eid(knock))}", knock),
             400, "M_BAD_JSON")  # fmt: skip
    _refused(_put(w, f"/_matrix/federation/v1/send_knock/{q(room.room_id)}/{q(w.eid(join))}", knock),
             400, "M_BAD_JSON")  # fmt: skip
    assert _membership(room, carl) == "leave"

    # -- invite -------------------------------------------------------------------------
    ghost_room = f"!ghost{secrets.token_hex(4)}:{w.hostile.server_name}"
    base = {"room_id": ghost_room, "sender": w.mallory, "type": "m.room.member", "prev_events": [],
            "auth_events": [], "depth": 3}  # fmt: skip

    def invite(invitee: str, sender: str = w.mallory, room_id: str = ghost_room) -> dict[str, Any]:
        return signed({**base, "room_id": room_id, "sender": sender, "state_key": invitee,
                       "content": {"membership": "invite"}})  # fmt: skip

    def put_invite(path_room: str, pdu: dict[str, Any], path_event: str | None = None) -> tuple[int, Any]:
        body = {"room_version": version.identifier, "event": pdu, "invite_room_state": []}
        return _put(w, f"/_matrix/federation/v2/invite/{q(path_room)}/{q(path_event or w.eid(pdu))}", body)

    good = invite(w.alice_id)
    _refused(put_invite(room.room_id, good), 400, "M_BAD_JSON")  # another room in the path
    _refused(put_invite(ghost_room, good, w.eid(join)), 400, "M_BAD_JSON")  # another event
    _refused(put_invite(ghost_room, invite(f"@someone:{w.other.server_name}")), 403, "M_FORBIDDEN")
    _refused(put_invite(ghost_room, invite(w.alice_id, sender=eve)), 403, "M_FORBIDDEN")
    invites = w.alice.sync()["rooms"].get("invite", {})
    assert ghost_room not in invites
    status, answer = put_invite(ghost_room, good)  # the control
    assert status == 200 and answer["event"]["signatures"].get(w.dagma.server_name), answer
    assert ghost_room in w.alice.sync()["rooms"].get("invite", {})
    w.alice.post(f"/rooms/{q(ghost_room)}/forget", expect=None)

    # -- EDUs about other servers' users ---------------------------------------------------
    def to_device(sender: str, mark: str) -> dict[str, Any]:
        return {"edu_type": "m.direct_to_device", "content": {
            "sender": sender, "type": "m.attack.test", "message_id": secrets.token_hex(8),
            "messages": {w.alice_id: {"*": {"mark": mark}}}}}  # fmt: skip

    before = w.alice.sync()["next_batch"]
    spoofed_mark, control_mark = f"spoofed-{secrets.token_hex(4)}", f"tdcontrol-{secrets.token_hex(4)}"
    edus = [
        to_device(w.alice_id, spoofed_mark),
        to_device(eve, spoofed_mark),
        {"edu_type": "m.typing", "content": {"room_id": room.room_id, "user_id": w.alice_id, "typing": True}},
        {"edu_type": "m.device_list_update", "content": {
            "user_id": eve, "device_id": "SPOOF", "stream_id": 1, "prev_id": [], "deleted": False,
            "keys": {"user_id": eve, "device_id": "SPOOF", "mark": spoofed_mark}}},
        {"edu_type": "m.signing_key_update", "content": {"user_id": w.alice_id, "mark": spoofed_mark}},
        to_device(w.mallory, control_mark),
    ]  # fmt: skip
    pdu = w.message("a PDU beside spoofed EDUs")
    assert w.send([pdu], edus) == {w.eid(pdu): {}}
    sync = w.alice.sync(since=before)
    dump = json.dumps(sync)
    assert control_mark in dump and spoofed_mark not in dump
    assert [e["sender"] for e in sync["to_device"]["events"]] == [w.mallory]
    typing = sync["rooms"]["join"].get(room.room_id, {}).get("ephemeral", {}).get("events", [])
    assert all(w.alice_id not in e["content"].get("user_ids", []) for e in typing)
    for table in ("e2e_remote_devices", "e2e_remote_device_lists", "e2e_remote_cross_signing_keys"):
        assert w.db.query(f"SELECT count(*) FROM {table} WHERE user_id = ANY(%s)",
                             ([eve, w.alice_id],)) == [(0,)], table  # fmt: skip
    w.sentinel()


# =========================================================================== disclosure


def _reads(w: World, room_id: str, eid: str) -> dict[str, tuple[int, Any]]:
    """Every federation read of ``eid`` and its room, as the hostile server."""
    fed = "/_matrix/federation/v1"
    get = lambda path: w.hostile.request(w.dagma, w.ca, "GET", fed + path)  # noqa: E731
    return {
        "event": get(f"/event/{q(eid)}"),
        "state": get(f"/state/{q(room_id)}?event_id={q(eid)}"),
        "state_ids": get(f"/state_ids/{q(room_id)}?event_id={q(eid)}"),
        "event_auth": get(f"/event_auth/{q(room_id)}/{q(eid)}"),
        "backfill": get(f"/backfill/{q(room_id)}?v={q(eid)}&limit=100"),
        "get_missing_events": w.hostile.request(
            w.dagma, w.ca, "POST", f"{fed}/get_missing_events/{q(room_id)}",
            {"earliest_events": [], "latest_events": [eid], "limit": 20, "min_depth": 0},
        ),
    }  # fmt: skip


def test_disclosure(world: World) -> None:
    """Spec #retrieving-events, #backfilling-and-retrieving-missing-events and the history
    visibility rules for servers: nothing of a room the server is not in; of a room it is in,
    no event from before it joined when ``history_visibility`` is ``joined``."""
    w = world
    # A private room the hostile server is not in.
    private = w.alice.create_room(preset="private_chat", room_version="11")
    mark = f"private-{secrets.token_hex(4)}"
    secret = w.alice.send(private, mark)
    for what, (status, answer) in _reads(w, private, secret).items():
        assert status in (403, 404) and answer["errcode"] in ("M_FORBIDDEN", "M_NOT_FOUND"), (what, answer)
        assert mark not in json.dumps(answer), what

    # A room joined after a message its visibility hides from later joiners.
    room_id = w.alice.create_room(preset="public_chat", room_version="11")
    w.alice.put(f"/rooms/{q(room_id)}/state/m.room.history_visibility", {"history_visibility": "joined"})
    mark = f"before-join-{secrets.token_hex(4)}"
    hidden = w.alice.send(room_id, mark)
    w.hostile.do_membership(w.dagma, w.ca, room_id, w.mallory)
    visible_mark = f"after-join-{secrets.token_hex(4)}"
    visible = w.alice.send(room_id, visible_mark)
    reads = _reads(w, room_id, visible)  # the control: after the join, everything readable
    assert reads["event"][0] == 200 and reads["event"][1]["pdus"][0]["content"]["body"] == visible_mark
    for what, (status, answer) in reads.items():
        assert status == 200, (what, answer)
        assert mark not in json.dumps(answer), what  # backfill walks back past the join
    for what, (status, answer) in _reads(w, room_id, hidden).items():
        # Refused, or (as Synapse does for /event) served redacted: never the content.
        assert status in (200, 403, 404), (what, answer)
        assert mark not in json.dumps(answer), what
    w.sentinel()


# =========================================================================== resource exhaustion


def _chain(w: World, n: int, prefix: str) -> list[dict[str, Any]]:
    """``n`` messages of mallory's, each on the previous one, on the room's current tips."""
    tips, depth = w.room.tips()
    auth = w.room.auth_for(w.mallory, "m.room.message")
    out: list[dict[str, Any]] = []
    for i in range(n):
        pdu = w.hostile.pdu(
            w.room.version, room_id=w.room.room_id, sender=w.mallory, event_type="m.room.message",
            content={"msgtype": "m.text", "body": f"{prefix}-{i}"}, prev_events=tips, auth_events=auth,
            depth=depth + i,
        )  # fmt: skip
        out.append(pdu)
        tips = [w.eid(pdu)]
    return out


def test_resource_exhaustion(world: World) -> None:
    """Spec #transactions ("up to 50 PDUs and 100 EDUs"), PDU format limits (20 prev_events,
    10 auth_events), get_missing_events limits; a deep missing chain costs a bounded number of
    requests to its sender."""
    w = world
    fed = "/_matrix/federation/v1"

    # 51 PDUs / 101 EDUs: the whole transaction refused, nothing of it stored.
    mark = f"flood-{secrets.token_hex(4)}"
    flood = _chain(w, 51, mark)
    status, answer = w.hostile.send(w.dagma, w.ca, flood)
    assert status == 400 and answer["errcode"] == "M_BAD_JSON", answer
    w.assert_nowhere(mark)
    typing = {
        "edu_type": "m.typing",
        "content": {"room_id": w.room.room_id, "user_id": w.mallory, "typing": False},
    }
    status, answer = w.hostile.send(w.dagma, w.ca, [flood[0]], [typing] * 101)
    assert status == 400 and answer["errcode"] == "M_BAD_JSON", answer
    w.assert_nowhere(mark)
    # The controls: 50 PDUs with 100 EDUs.
    status, answer = w.hostile.send(w.dagma, w.ca, flood[:50], [typing] * 100)
    assert status == 200 and answer["pdus"] == {w.eid(p): {} for p in flood[:50]}, answer

    # Huge prev_events / auth_events lists: dropped on format, nobody asked about them.
    asked = len(w.hostile.http.requests)
    fake = [f"${secrets.token_urlsafe(32)}" for _ in range(5000)]
    for field in ("prev_events", "auth_events"):
        mark = f"huge-{field}-{secrets.token_hex(4)}"
        tips, _ = w.room.tips()
        refs: dict[str, Any] = {
            "prev_events": tips,
            "auth_events": w.room.auth_for(w.mallory, "m.room.message"),
        }
        refs[field] = refs[field] + fake
        pdu = w.message(mark, **refs)
        assert _verdict(w, pdu).startswith("dropped"), field
        w.assert_nowhere(mark)
    assert len(w.hostile.http.requests) == asked, [r.path for r in w.hostile.http.requests[asked:]]

    # get_missing_events asks for too much: answered within Dagma's limits.
    tips, _ = w.room.tips()
    status, answer = w.hostile.request(w.dagma, w.ca, "POST", f"{fed}/get_missing_events/{q(w.room.room_id)}",
                                       {"earliest_events": [], "latest_events": tips, "limit": 100000})  # fmt: skip
    assert status == 200 and 0 < len(answer["events"]) <= 20, len(answer.get("events", []))
    status, answer = w.hostile.request(w.dagma, w.ca, "POST", f"{fed}/get_missing_events/{q(w.room.room_id)}",
                                       {"earliest_events": fake, "latest_events": tips + fake, "limit": 10})  # fmt: skip
    assert status in (200, 400), answer
    if status == 200:
        assert len(answer["events"]) <= 10
    status, answer = w.hostile.request(w.dagma, w.ca, "GET",
                                       f"{fed}/backfill/{q(w.room.room_id)}?v={q(tips[0])}&limit=100000")  # fmt: skip
    assert status == 200 and 0 < len(answer["pdus"]) <= 100, len(answer.get("pdus", []))

    # A deep chain of missing events: only its newest event is sent. Dagma asks once or twice
    # for missing events, then takes the state before the event (state_ids), and accepts it.
    deep = _chain(w, 300, f"deep-{secrets.token_hex(4)}")
    by_id = {w.eid(p): p for p in deep}
    order = [w.eid(p) for p in deep]
    state_ids = sorted(w.room.state().values())

    def missing(record: Any) -> tuple[int, dict[str, str], bytes]:
        body = json.loads(record.body)
        newest = min(order.index(e) for e in body["latest_events"] if e in by_id)
        limit = min(int(body.get("limit", 10)), 10)
        chunk = [by_id[e] for e in order[max(0, newest - limit) : newest]]
        return 200, {}, json.dumps({"events": chunk}).encode()

    def state(_: Any) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, json.dumps({"pdu_ids": state_ids, "auth_chain_ids": state_ids}).encode()

    def event(record: Any) -> tuple[int, dict[str, str], bytes]:
        wanted = unquote(record.path.rsplit("/", 1)[1])
        if wanted not in by_id:
            return 404, {}, b'{"errcode":"M_NOT_FOUND","error":"no"}'
        body = {"origin": w.hostile.server_name, "origin_server_ts": now_ms(), "pdus": [by_id[wanted]]}
        return 200, {}, json.dumps(body).encode()

    w.hostile.route(f"{fed}/get_missing_events/", missing)
    w.hostile.route(f"{fed}/state_ids/", state)
    w.hostile.route(f"{fed}/event/", event)
    asked = len(w.hostile.http.requests)
    assert w.send([deep[-1]]) == {order[-1]: {}}
    calls = [r.path.split("?")[0].rsplit("/", 2)[-2] for r in w.hostile.http.requests[asked:]]
    assert calls.count("get_missing_events") <= 2 and len(calls) <= 25, calls
    assert w.alice_sees(order[-1])
    w.sentinel()


# =========================================================================== SSRF


def test_ssrf(world: World) -> None:
    """Spec #resolving-server-names under ``ip_range_blacklist``: a server name, a
    ``.well-known`` delegation or redirect, or a user ID pointing at an internal address never
    makes Dagma connect there (the internal listener sees no connection). SRV targets need
    DNS, which the test does not control: the same guard is reached through ``.well-known``."""
    w = world
    internal = InternalListener()
    well_known = WellKnownServer(w.ca)
    # A server called "localhost" (no port: discovery goes through .well-known on port 443).
    bare = HostileServer(w.ca, "bare")
    bare.server_name = "localhost"
    inside = f"{internal.host}:{internal.port}"
    devices = f"/_matrix/federation/v1/user/devices/{q(w.alice_id)}"

    def forget_delegation() -> None:
        w.db.query("DELETE FROM well_known_delegations WHERE server_name = 'localhost' RETURNING 1")

    try:
        # An origin named by an internal IP literal: its keys are never fetched.
        status, answer = w.hostile.request(w.dagma, w.ca, "GET", devices, origin=inside)
        assert status == 401 and answer["errcode"] == "M_UNAUTHORIZED", answer

        # .well-known delegating to the internal address, or redirecting there.
        redirect = f"https://{inside}/.well-known/matrix/server"
        for answer_ in (
            (200, {}, json.dumps({"m.server": inside}).encode()),
            (302, {"Location": redirect}, b""),
        ):
            forget_delegation()
            well_known.answer = answer_
            asked = len(well_known.requests)
            status, answer = bare.request(w.dagma, w.ca, "GET", devices)
            assert status == 401 and answer["errcode"] == "M_UNAUTHORIZED", answer
            assert len(well_known.requests) > asked  # the delegation was looked up, and refused

        # The control: the same server delegating to where it really is.
        forget_delegation()
        well_known.answer = (200, {}, json.dumps({"m.server": f"localhost:{bare.http.port}"}).encode())
        status, answer = bare.request(w.dagma, w.ca, "GET", devices)
        assert status == 200, answer
        forget_delegation()

        # A PDU signed by a server at an internal address: its keys are never fetched.
        victim = f"@v:{inside}"
        mark = f"ssrf-{secrets.token_hex(4)}"
        join = w.state_event("m.room.member", victim, {"membership": "join", "displayname": mark},
                             sender=victim, server_name=inside)  # fmt: skip
        assert _verdict(w, join).startswith("dropped")
        w.assert_nowhere(mark)

        # Local users pointing Dagma there: a join through it, an invite of its user.
        r = w.alice.post(f"/join/{q('!room:' + inside)}", {}, params={"server_name": inside}, expect=None)
        assert r.status >= 400, r.json
        r = w.alice.post(f"/rooms/{q(w.room.room_id)}/invite", {"user_id": victim}, expect=None)
        assert r.status >= 400 or _membership(w.room, victim) == "invite", r.json
        assert internal.connections == 0
        assert bare.http.requests, "the control reached the real server"
    finally:
        internal.close()
        well_known.close()
        bare.close()
    w.sentinel()

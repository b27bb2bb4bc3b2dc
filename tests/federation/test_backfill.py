"""Backfill on ``/messages``: after joining a room on another server, a backwards walk that
reaches the join asks the room's servers for the history before it (spec: server-server API
"Backfilling and retrieving missing events"), against a fake resident whose answers we
control: every event is checked, the history is shown in order without duplicates, it is
not news to /sync nor to anyone else, and a dead peer costs a bounded wait, once."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import unquote

import pytest

from dagcore import events_persisted
from dagcore.actions import backfill, fill_gaps, remote_membership
from dagcore.actions.room_access import access_room_history
from dagcore.clock import now_ms
from dagcore.federation.client import FederationUnreachable
from dagcore.federation.keyring import Keyring
from dagcore.server_keys import build_server_key_response, get_server_name
from dagcore.store import backfill as backfill_store
from dagcore.store import rooms as room_store
from dagcore.store import sync as sync_store
from dagcore.store.streams import get_stream_position
from dagcore.store.timeline import TopoKey
from dagcore.sync.tokens import RoomToken
from tests.actions.roomkit import make_user
from tests.federation.fakes import Clock, FakeFederation, FakeKeyServer
from tests.federation.test_remote_join import FakeResident

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]

HISTORY = 30


class FakeHistoryServer(FakeResident):
    """A resident whose room has history before our join, served by /backfill, /state_ids,
    /event and /event_auth as a Dagma or Synapse would (the room is linear: one prev each)."""

    def __init__(self, name: str, version: str, *, history_visibility: str | None = None) -> None:
        super().__init__(name, version)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.down = False
        #: Set: answer /backfill only once this is set (or the caller's timeout passes).
        self.hang: threading.Event | None = None
        if history_visibility is not None:
            self._append("hv", "m.room.history_visibility", "", {"history_visibility": history_visibility})
        for i in range(HISTORY):
            self._append(f"m{i}", "m.room.message", None, {"msgtype": "m.text", "body": f"m{i}"})

    def _append(self, key: str, etype: str, state_key: str | None, content: dict[str, Any]) -> None:
        auth = ["join", "pl"]
        pdu_in: dict[str, Any] = {
            "type": etype, "sender": self.creator, "room_id": self.room_id, "content": content,
            "prev_events": [self.ref(self.prev)], "auth_events": self.cite + [self.ref(self.ids[a]) for a in auth],
            "depth": len(self.events) + 1, "origin_server_ts": now_ms(),
        }  # fmt: skip
        if state_key is not None:
            pdu_in["state_key"] = state_key
        pdu, event_id = self.remote.sign_pdu(pdu_in, self.version)
        self.pdus[event_id] = pdu
        self.events.append(pdu)
        self.ids[key] = event_id
        self.prev = event_id

    def state_events(self) -> list[dict[str, Any]]:
        return [p for p in self.events if "state_key" in p]

    def put_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((destination, path))
        state = self.state_events()
        return {"state": state, "auth_chain": state, "event": content, "members_omitted": False}

    def _id(self, pdu: dict[str, Any]) -> str:
        return next(i for i, p in self.pdus.items() if p is pdu)

    def _state_before(self, event_id: str) -> list[dict[str, Any]]:
        state: dict[tuple[str, str], dict[str, Any]] = {}
        for pdu in self.events:
            if self._id(pdu) == event_id:
                return list(state.values())
            if "state_key" in pdu:
                state[(pdu["type"], pdu["state_key"])] = pdu
        raise AssertionError(event_id)

    def request(self, method: str, destination: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.get_json(destination, path, **kwargs)

    def get_json(self, destination: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if "/make_join/" in path:
            return super().get_json(destination, path, **kwargs)
        self.requests.append((path, kwargs))
        self.calls.append((destination, path))
        if self.down or destination != self.name:
            raise FederationUnreachable(destination, "down")
        query = kwargs.get("query") or {}
        if "/backfill/" in path:
            if self.hang is not None and not self.hang.wait(kwargs["timeout"]):
                raise FederationUnreachable(destination, f"answer took longer than {kwargs['timeout']} s")
            return {"origin": self.name, "origin_server_ts": now_ms(), "pdus": self._walk(query)}
        if "/state_ids/" in path:
            state = self._state_before(query["event_id"])
            chain = self.state_events()
            return {"pdu_ids": [self._id(p) for p in state], "auth_chain_ids": [self._id(p) for p in chain]}
        if "/event_auth/" in path:
            return {"auth_chain": self.state_events()}
        if "/event/" in path:
            return {"pdus": [self.pdus[unquote(path.rsplit("/", 1)[1])]]}
        raise AssertionError(path)

    def _walk(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Dagma's and Synapse's answer: the ``v`` events and their ancestors, newest first."""
        start = max(self.events.index(self.pdus[v]) for v in query["v"] if v in self.pdus)
        limit = int(query["limit"])
        return list(reversed(self.events[max(0, start + 1 - limit) : start + 1]))


@pytest.fixture
def net() -> FakeFederation:
    return FakeFederation(Clock())


@pytest.fixture
def resident(net: FakeFederation, monkeypatch) -> FakeHistoryServer:
    server = FakeHistoryServer("far.test:8448", "11")
    _install(server, net, monkeypatch)
    return server


def _install(server: FakeHistoryServer, net: FakeFederation, monkeypatch) -> None:
    """The keyring finds the server's key through ``net``; every request goes to ``server``."""
    net.servers[server.name] = FakeKeyServer(server.name, [server.remote.key], valid_for_ms=10**13)
    ring = Keyring(
        transport=net,
        our_server_name=get_server_name(),
        our_key_response=lambda now: build_server_key_response(now_ms=now),
    )
    for module in (remote_membership, fill_gaps):
        monkeypatch.setattr(module, "get_keyring", lambda: ring)
    for module in (remote_membership, fill_gaps, backfill):
        monkeypatch.setattr(module, "get_federation_client", lambda: server)


def _joined(server: FakeHistoryServer) -> Any:
    bob = make_user()
    remote_membership.join_through_servers(
        user_id=bob.user_id, room_id=server.room_id, servers=[server.name], content={}
    )
    return bob


def _walk_back(user_id: str, room_id: str, *, limit: int) -> list[Any]:
    """Every event ``/messages`` gives walking back from the end, page after page, oldest first."""
    reader = access_room_history(user_id=user_id, room_id=room_id)
    events: list[Any] = []
    key: TopoKey | None = None
    for _ in range(100):
        page = backfill.access_room_messages_backfilling(reader, from_key=key, direction="b", limit=limit)
        events += page.events
        if page.next_key is None:
            return list(reversed(events))
        key = page.next_key
    raise AssertionError("the walk did not end")


def _bodies(events: list[Any]) -> list[str]:
    return [e.event.content["body"] for e in events if e.event.type == "m.room.message"]


@pytest.mark.parametrize("page", [7, 50])
def test_the_history_before_our_join_is_backfilled_in_the_residents_order_without_duplicates(
    resident, page
) -> None:
    bob = _joined(resident)
    room = room_store.get_room(resident.room_id)
    assert room is not None and backfill_store.count_backward_extremities(room) == 1  # our join's prev
    events = _walk_back(bob.user_id, resident.room_id, limit=page)
    assert _bodies(events) == [f"m{i}" for i in range(HISTORY)]
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids))
    # The room's creation (held as outliers from the join's state) joined the timeline in place.
    assert [e.event.type for e in events[:4]] == [
        "m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules",
    ]  # fmt: skip
    assert events[-1].event.type == "m.room.member" and events[-1].event.state_key == bob.user_id
    assert backfill_store.count_backward_extremities(room) == 0  # the create event has no prevs
    # A second walk asks nobody and gives the same.
    asked = len(resident.requests)
    assert [e.event_id for e in _walk_back(bob.user_id, resident.room_id, limit=page)] == ids
    assert len(resident.requests) == asked


def test_backfilled_history_is_not_news_to_sync_nor_announced(resident) -> None:
    bob = _joined(resident)
    room = room_store.get_room(resident.room_id)
    assert room is not None
    since = get_stream_position("events")
    heard: list[Any] = []
    events_persisted.subscribe("test_backfill", heard.append)
    try:
        events = _walk_back(bob.user_id, resident.room_id, limit=100)
    finally:
        events_persisted.unsubscribe("test_backfill")
    history = [e for e in events if e.event.state_key != bob.user_id]
    assert len(history) == HISTORY + 4
    # Negative positions, the oldest lowest: below every sync token, in the room's order.
    positions = [e.stream_ordering for e in history]
    assert all(p is not None and p < 0 for p in positions) and positions == sorted(positions)
    assert heard == []  # no /sync wake-up, no push, no outbox row
    assert get_stream_position("events") == since
    now = get_stream_position("events")
    assert sync_store.get_new_timelines({room.pk: (since, now)}, limit=10) == {}
    # An initial sync's timeline (stream order) ends with the newest history, then our join.
    recent = sync_store.get_recent_events({room.pk: (None, now)}, limit=3)[room.pk]
    assert _bodies(recent) == ["m27", "m28", "m29"] and recent[-1].event.state_key == bob.user_id


def test_a_gap_in_the_middle_is_filled_with_the_state_before_its_oldest_event(resident, monkeypatch) -> None:
    monkeypatch.setattr(backfill, "BACKFILL_LIMIT", 12)
    bob = _joined(resident)
    events = _walk_back(bob.user_id, resident.room_id, limit=5)
    assert _bodies(events) == [f"m{i}" for i in range(HISTORY)]
    state_asks = [p for p, _ in resident.requests if "/state_ids/" in p]
    # 34 events before our join, 12 a batch: the two batches cut short of the room's start
    # need the state before their oldest event; the last one reaches the create event.
    assert len(state_asks) == 2


def test_a_dead_peer_costs_one_bounded_wait_and_the_page_holds_what_we_have(resident, monkeypatch) -> None:
    bob = _joined(resident)
    resident.hang = threading.Event()  # never set: the peer never answers
    monkeypatch.setattr(backfill, "BACKFILL_BUDGET_S", 0.5)
    started = time.monotonic()
    events = _walk_back(bob.user_id, resident.room_id, limit=10)
    assert time.monotonic() - started < 5
    assert [e.event.state_key for e in events] == [bob.user_id]  # only our join
    (_path, kwargs), *_ = [r for r in resident.requests if "/backfill/" in r[0]]
    assert kwargs["timeout"] <= 0.5
    # The gap waits before it is asked for again: the next page asks nobody.
    asked = len(resident.requests)
    _walk_back(bob.user_id, resident.room_id, limit=10)
    assert len(resident.requests) == asked
    room = room_store.get_room(resident.room_id)
    assert room is not None
    (gap,) = backfill_store.get_backward_extremities(
        room, max_depth=None, min_depth=None, now=now_ms() + backfill.RETRY_BASE_MS + 1, limit=5
    )
    assert gap.attempts == 1


def test_a_server_down_is_skipped_for_the_next(resident, monkeypatch) -> None:
    bob = _joined(resident)
    room = room_store.get_room(resident.room_id)
    assert room is not None
    monkeypatch.setattr(backfill, "backfill_servers", lambda room: ["down.test", resident.name])
    events = _walk_back(bob.user_id, resident.room_id, limit=100)
    assert _bodies(events) == [f"m{i}" for i in range(HISTORY)]
    assert [d for d, p in resident.calls if "/backfill/" in p][:2] == ["down.test", resident.name]


def test_forged_history_is_dropped(resident) -> None:
    bob = _joined(resident)
    forged = dict(resident.pdus[resident.ids["m29"]])
    forged["signatures"] = {resident.name: {"ed25519:x": "AAAA"}}
    resident.pdus[resident.ids["m29"]] = forged
    resident.events[-1] = forged
    events = _walk_back(bob.user_id, resident.room_id, limit=100)
    # m29 fails the signature check and is dropped; what it cites is the resident's to prove.
    assert _bodies(events) == [f"m{i}" for i in range(HISTORY - 1)]
    room = room_store.get_room(resident.room_id)
    assert room is not None and backfill_store.count_backward_extremities(room) == 1  # m29 still missing


def test_history_our_users_may_not_see_stays_hidden_even_when_a_peer_sends_it(net, monkeypatch) -> None:
    server = FakeHistoryServer("far.test:8448", "11", history_visibility="joined")
    _install(server, net, monkeypatch)
    bob = _joined(server)
    events = _walk_back(bob.user_id, server.room_id, limit=100)
    # The peer (wrongly) sent it all; the client's history visibility still applies.
    assert _bodies(events) == []
    room = room_store.get_room(server.room_id)
    assert room is not None and backfill_store.count_backward_extremities(room) == 0


def test_room_tokens_carry_a_backfilled_events_negative_position() -> None:
    token = RoomToken(12, -34)
    assert RoomToken.parse(str(token)) == token == RoomToken.parse("t12_-34")

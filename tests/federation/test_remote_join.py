"""Joining a room on another server, against a fake resident server whose answers we control:
every event of the answer is checked, an invalid answer stores nothing and names the server,
the next server is tried (spec: server-server API "Joining Rooms")."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from dagcore.actions import membership, persist_event, remote_membership
from dagcore.clock import now_ms
from dagcore.federation.client import FederationUnreachable
from dagcore.federation.keyring import Keyring
from dagcore.http.errors import MatrixError
from dagcore.models import CurrentStateEvent, EventAuthEdge, EventEdge
from dagcore.models import Event as EventRow
from dagcore.protocol.events import Event
from dagcore.protocol.hashing import compute_reference_hash, compute_room_id_v12, encode_base64
from dagcore.protocol.room_versions import EventFormat, get_room_version
from dagcore.server_keys import build_server_key_response, get_server_name
from dagcore.store import rooms as room_store
from dagcore.store import sync as sync_store
from tests.actions.roomkit import make_user
from tests.federation.fakes import Clock, FakeFederation, FakeKeyServer
from tests.federation.test_resident_membership import Remote

# Also in the SQLite pass: the quick start federates on SQLite.
pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


class FakeResident:
    """A server holding a public room: answers make_join and send_join, tamperable."""

    def __init__(self, name: str, version: str) -> None:
        self.remote = Remote(name)
        self.name = name
        self.version = version
        self.creator = f"@alice:{name}"
        self.calls: list[tuple[str, str]] = []
        self.tamper: dict[str, Any] = {}
        room_version = get_room_version(version)
        create: dict[str, Any] = {
            "type": "m.room.create", "state_key": "", "sender": self.creator,
            "content": {"room_version": version}, "prev_events": [], "auth_events": [], "depth": 1,
            "origin_server_ts": now_ms(),
        }  # fmt: skip
        if not room_version.room_id_is_create_event_hash:
            create["room_id"] = f"!hall:{name}"
        if not room_version.implicit_room_creator:
            create["content"]["creator"] = self.creator
        self.create, create_id = self.remote.sign_pdu(create, version)
        self.room_id = (
            compute_room_id_v12(self.create) if room_version.room_id_is_create_event_hash else f"!hall:{name}"
        )
        self.pdus = {create_id: self.create}
        self.cite = [] if room_version.room_id_is_create_event_hash else [self.ref(create_id)]
        self.events = [self.create]
        self.ids = {"create": create_id}
        prev = create_id
        # v12 creators hold infinite power: they may not be listed in the power levels.
        users = {} if room_version.privileged_creators else {self.creator: 100}
        for key, etype, state_key, content, auth in [
            ("join", "m.room.member", self.creator, {"membership": "join"}, []),
            ("pl", "m.room.power_levels", "", {"users": users}, ["join"]),
            ("jr", "m.room.join_rules", "", {"join_rule": "public"}, ["join", "pl"]),
        ]:
            pdu, event_id = self.remote.sign_pdu(
                {"type": etype, "state_key": state_key, "sender": self.creator, "room_id": self.room_id,
                 "content": content, "prev_events": [self.ref(prev)],
                 "auth_events": self.cite + [self.ref(self.ids[a]) for a in auth],
                 "depth": len(self.events) + 1, "origin_server_ts": now_ms()},
                version,
            )  # fmt: skip
            self.pdus[event_id] = pdu
            self.events.append(pdu)
            self.ids[key] = event_id
            prev = event_id
        self.prev = prev

    def add_members(self, count: int) -> None:
        """``count`` more users of this server join (a bigger room: a bigger send_join answer)."""
        for i in range(count):
            user_id = f"@member{i}:{self.name}"
            pdu, event_id = self.remote.sign_pdu(
                {"type": "m.room.member", "state_key": user_id, "sender": user_id, "room_id": self.room_id,
                 "content": {"membership": "join"}, "prev_events": [self.ref(self.prev)],
                 "auth_events": [*self.cite, self.ref(self.ids["jr"]), self.ref(self.ids["pl"])],
                 "depth": len(self.events) + 1, "origin_server_ts": now_ms()},
                self.version,
            )  # fmt: skip
            self.pdus[event_id] = pdu
            self.events.append(pdu)
            self.prev = event_id

    def signed(
        self, sender: str, etype: str, state_key: str, content: dict[str, Any], auth: list[str]
    ) -> Any:
        """A state event of this server on top of the room, citing ``auth`` (event IDs); not added to the room."""
        pdu, _ = self.remote.sign_pdu(
            {"type": etype, "state_key": state_key, "sender": sender, "room_id": self.room_id,
             "content": content, "prev_events": [self.ref(self.prev)],
             "auth_events": [*self.cite, *(self.ref(a) if a in self.pdus else a for a in auth)],
             "depth": len(self.events) + 1, "origin_server_ts": now_ms()},
            self.version,
        )  # fmt: skip
        return pdu

    def ref(self, event_id: str) -> Any:
        """How the room version cites an event (v1/v2: with its reference hash)."""
        room_version = get_room_version(self.version)
        if room_version.event_format is EventFormat.V1:
            return [
                event_id,
                {"sha256": encode_base64(compute_reference_hash(self.pdus[event_id], room_version))},
            ]
        return event_id

    def get_json(self, destination: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((destination, path))
        if destination != self.name:
            raise FederationUnreachable(destination, "down")
        user_id = path.rsplit("/", 1)[1].replace("%40", "@").replace("%3A", ":")
        template = {
            "type": "m.room.member", "room_id": self.room_id, "sender": user_id, "state_key": user_id,
            "content": {"membership": "join"}, "prev_events": [self.ref(self.prev)], "depth": len(self.events) + 1,
            "auth_events": [*self.cite, self.ref(self.ids["jr"]), self.ref(self.ids["pl"])],
            "origin_server_ts": now_ms(),
        }  # fmt: skip
        template.update(self.tamper.get("template", {}))
        return {"room_version": self.tamper.get("room_version", self.version), "event": template}

    def put_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((destination, path))
        state = list(self.events)
        if "state" in self.tamper:
            state = self.tamper["state"](state)
        if self.tamper.get("join_in_state"):
            state.append(content)  # the state *after* our join, not before it
        return {"state": state, "auth_chain": list(self.events), "event": content, "members_omitted": False}


@pytest.fixture
def keyring(monkeypatch) -> FakeFederation:
    net = FakeFederation(Clock())
    ring = Keyring(
        transport=net,
        our_server_name=get_server_name(),
        our_key_response=lambda now: build_server_key_response(now_ms=now),
    )
    monkeypatch.setattr(remote_membership, "get_keyring", lambda: ring)
    return net


def _resident(
    keyring: FakeFederation, monkeypatch, version: str, name: str = "far.test:8448"
) -> FakeResident:
    resident = FakeResident(name, version)
    keyring.servers[name] = FakeKeyServer(name, [resident.remote.key], valid_for_ms=10**13)
    monkeypatch.setattr(remote_membership, "get_federation_client", lambda: resident)
    return resident


@pytest.mark.parametrize("version", ["2", "10", "11", "12"])
def test_a_valid_answer_makes_the_rooms_state_ours_with_our_join_on_top(
    keyring, monkeypatch, version
) -> None:
    resident = _resident(keyring, monkeypatch, version)
    bob = make_user()
    joined = remote_membership.join_through_servers(
        user_id=bob.user_id, room_id=resident.room_id, servers=["down.test", resident.name], content={}
    )
    assert joined == resident.room_id
    assert [d for d, _ in resident.calls] == [
        "down.test",
        resident.name,
        resident.name,
    ]  # the next server tried
    room = room_store.get_room(resident.room_id)
    assert room is not None and room.room_version == version
    assert {m.room_id: m.membership for m in sync_store.get_user_memberships(bob.user_id)} == {
        resident.room_id: "join"
    }
    creator = room_store.get_membership(room, resident.creator)
    assert creator is not None and creator.membership == "join"


def _forge(state: list[dict[str, Any]]) -> list[dict[str, Any]]:
    forged = dict(state[-1])
    forged["content"] = {"join_rule": "invite"}  # content changed after signing: the hash fails
    forged["signatures"] = {"far.test:8448": {"ed25519:x": "AAAA"}}
    return [*state[:-1], forged]


@pytest.mark.parametrize(
    ("case", "tamper"),
    [
        ("unsupported version", {"room_version": "1"}),
        (
            "template for another user",
            {"template": {"sender": "@eve:far.test:8448", "state_key": "@eve:far.test:8448"}},
        ),
        ("template for another room", {"template": {"room_id": "!other:far.test:8448"}}),
        ("forged state event", {"state": _forge}),
        ("no create event", {"state": lambda s: s[1:]}),
        ("create of another room", {"state": lambda s: [FakeResident("far.test:8448", "12").create, *s[1:]]}),
        ("state containing our join", {"join_in_state": True}),
        (
            "state with a foreign event",
            {"state": lambda s: [*s, FakeResident("far.test:8448", "12").events[1]]},
        ),
    ],
)
def test_an_invalid_answer_stores_nothing_and_names_the_server(keyring, monkeypatch, case, tamper) -> None:
    resident = _resident(keyring, monkeypatch, "12")
    resident.tamper = tamper
    bob = make_user()
    with pytest.raises(MatrixError) as err:
        remote_membership.join_through_servers(
            user_id=bob.user_id, room_id=resident.room_id, servers=[resident.name], content={}
        )
    assert err.value.status == 502 and resident.name in err.value.error, err.value.error
    assert room_store.get_room(resident.room_id) is None
    assert sync_store.get_user_memberships(bob.user_id) == []


def test_no_server_to_ask_is_404() -> None:
    with pytest.raises(MatrixError) as err:
        remote_membership.do_remote_join(user_id="@bob:x", room_id="!r", servers=[], content={})
    assert (err.value.status, err.value.errcode) == (404, "M_NOT_FOUND")


def test_a_retried_handshake_attaches_to_the_one_running() -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def work() -> str:
        runs.append(1)
        started.set()
        assert release.wait(10)
        return "!done"

    results: list[str] = []
    first = threading.Thread(
        target=lambda: results.append(remote_membership.run_detached(("join", "u", "r"), work))
    )
    first.start()
    assert started.wait(10)
    second = threading.Thread(
        target=lambda: results.append(remote_membership.run_detached(("join", "u", "r"), work))
    )
    second.start()
    # The retry waits on the first run: one handshake, two callers.
    deadline = time.monotonic() + 10
    while remote_membership.running_handshakes() != {("join", "u", "r"): 2}:
        assert time.monotonic() < deadline, remote_membership.running_handshakes()
        time.sleep(0.01)  # polling the observable, with a deadline
    release.set()
    first.join(10)
    second.join(10)
    assert results == ["!done", "!done"] and runs == [1]
    assert remote_membership.running_handshakes() == {}


def test_a_handshake_over_before_it_is_watched_does_not_hang_its_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A join through a refused address fails at once: its future can be done before the
    caller registers the clean-up, which then runs in the caller's thread. It used to take
    the non-reentrant lock the caller still held, and the client's /join hung (the flaky
    ``test_ssrf`` timeout)."""
    from concurrent.futures import Future

    class AtOnce:
        """An executor whose work is done before ``submit`` returns."""

        def submit(self, fn: Any, *args: Any) -> Future[Any]:
            future: Future[Any] = Future()
            try:
                future.set_result(fn(*args))
            except Exception as exc:
                future.set_exception(exc)
            return future

    def refused() -> str:
        raise RuntimeError("127.0.0.2 resolves to a blocked address")

    monkeypatch.setattr(remote_membership, "_executor", AtOnce())
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            remote_membership.run_detached(("join", "u", "refused"), refused)
        except RuntimeError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(10)
    assert not caller.is_alive(), "run_detached hung on its own lock"
    assert [str(e) for e in outcome] == ["127.0.0.2 resolves to a blocked address"]
    assert remote_membership.running_handshakes() == {}
    assert remote_membership.run_detached(("join", "u", "ok"), lambda: "!room") == "!room"


def test_a_room_we_left_is_joined_again_through_the_resident_with_its_state_renewed(
    keyring, monkeypatch
) -> None:
    resident = _resident(keyring, monkeypatch, "11")
    bob = make_user()
    remote_membership.join_through_servers(
        user_id=bob.user_id, room_id=resident.room_id, servers=[resident.name], content={}
    )
    membership.check_leave_room(user_id=bob.user_id, room_id=resident.room_id)
    room = room_store.get_room(resident.room_id)
    assert room is not None and room_store.get_membership(room, bob.user_id).membership == "leave"  # type: ignore[union-attr]
    remote_membership.join_through_servers(
        user_id=bob.user_id, room_id=resident.room_id, servers=[resident.name], content={}
    )
    room = room_store.get_room(resident.room_id)
    assert room is not None
    assert room_store.get_membership(room, bob.user_id).membership == "join"  # type: ignore[union-attr]
    assert room_store.get_membership(room, resident.creator).membership == "join"  # type: ignore[union-attr]
    assert sorted(room_store.get_joined_servers(room)) == sorted([resident.name, get_server_name()])


def test_the_answers_signing_keys_are_read_in_one_lookup(keyring, monkeypatch) -> None:
    # A thousand-member room's state is a thousand events: their keys are read together.
    resident = _resident(keyring, monkeypatch, "10")
    ring = remote_membership.get_keyring()
    lookups: list[int] = []
    real = ring.get_verify_keys

    def counting(requests: Any) -> Any:
        requests = list(requests)
        lookups.append(len(requests))
        return real(requests)

    monkeypatch.setattr(ring, "get_verify_keys", counting)
    bob = make_user()
    remote_membership.join_through_servers(
        user_id=bob.user_id, room_id=resident.room_id, servers=[resident.name], content={}
    )
    assert len(resident.events) * 2 == 8  # state and auth chain: 8 signed events in the answer
    assert lookups == [1]  # one key, one lookup


def _one_by_one(*, room: Any, events: list[Event]) -> dict[str, int]:
    """The answer's outliers stored as they were before the batch: each through the pipeline."""
    nids: dict[str, int] = {}
    for event in events:
        stored = persist_event.persist_received_event(event, outlier=True)
        if stored.rejected_reason is not None:
            raise persist_event.EventRejected(f"{event.event_id} is rejected: {stored.rejected_reason}")
        nids[event.event_id] = stored.nid
    return nids


def _room_rows(room_id: str) -> dict[str, Any]:
    """Everything a join writes for the room's events, internal IDs replaced by event IDs; our
    join (a new event each run: its timestamp, v1/v2 its random ID) named ``$our-join``."""
    room = room_store.get_room(room_id)
    assert room is not None
    rows = list(EventRow.objects.filter(room=room).order_by("event_id").values())
    event_id_of = {r["id"]: r["event_id"] for r in rows}
    events = {}
    for r in rows:
        chain = json.loads(r["auth_chain"]) if r["auth_chain"] is not None else None
        events[r["event_id"]] = {
            **{k: v for k, v in r.items() if k not in ("id", "room_id", "received_ts", "auth_chain")},
            # State groups are numbered by a sequence: whether the event has one.
            "state_group": r["state_group"] is not None,
            "state_group_before": r["state_group_before"] is not None,
            "auth_chain": None if chain is None else sorted(event_id_of[n] for n in chain),
        }
    (join_id,) = [e for e, r in events.items() if not r["outlier"]]
    for varies in ("json", "origin_server_ts"):
        events[join_id].pop(varies)
    snapshot = {
        "events": events,
        "prev_edges": sorted(
            EventEdge.objects.filter(event__room=room).values_list("event__event_id", "prev_event_id")
        ),
        "auth_edges": sorted(
            EventAuthEdge.objects.filter(event__room=room).values_list("event__event_id", "auth_event_id")
        ),
        "current_state": sorted(
            CurrentStateEvent.objects.filter(room=room).values_list("type", "state_key", "event__event_id")
        ),
    }
    named = json.loads(json.dumps(snapshot).replace(join_id, "$our-join"))
    return {part: sorted(rows) if isinstance(rows, list) else rows for part, rows in named.items()}


class _RolledBack(Exception):
    pass


@pytest.mark.parametrize("version", ["2", "10", "12"])
def test_the_answers_outliers_stored_together_are_the_rows_stored_one_by_one(
    keyring, monkeypatch, version
) -> None:
    resident = _resident(keyring, monkeypatch, version)
    resident.add_members(50)
    bob = make_user()

    def join() -> dict[str, Any]:
        remote_membership.join_through_servers(
            user_id=bob.user_id, room_id=resident.room_id, servers=[resident.name], content={}
        )
        return _room_rows(resident.room_id)

    with monkeypatch.context() as patched:
        patched.setattr(remote_membership, "persist_received_outliers", _one_by_one)
        try:
            with transaction.atomic():
                one_by_one = join()
                raise _RolledBack
        except _RolledBack:
            pass
    assert room_store.get_room(resident.room_id) is None
    together = join()
    for part in together:
        assert together[part] == one_by_one[part], part
    assert together["events"]["$our-join"]["stream_ordering"] is not None
    outliers = [r for r in together["events"].values() if r["outlier"]]
    assert {r["event_id"] for r in outliers} == set(resident.pdus) and len(outliers) == 4 + 50
    assert all(
        r["stream_ordering"] is None and not r["state_group"] and r["rejected_reason"] is None
        for r in outliers
    )
    assert all(r["auth_chain"] is not None for r in outliers)  # state events: their chains materialised


def _join_queries(keyring, monkeypatch, members: int) -> int:
    resident = _resident(keyring, monkeypatch, "10", name=f"far{members}.test:8448")
    resident.add_members(members)
    bob = make_user()
    with CaptureQueriesContext(connection) as queries:
        remote_membership.join_through_servers(
            user_id=bob.user_id, room_id=resident.room_id, servers=[resident.name], content={}
        )
    return len(queries)


def test_a_bigger_answer_costs_no_more_statements(keyring, monkeypatch) -> None:
    # A 1,000-member room's answer is 1,000 outliers: stored in a fixed number of statements,
    # not a handful per event (issue 10's benchmark: seconds per join).
    small = _join_queries(keyring, monkeypatch, 5)
    big = _join_queries(keyring, monkeypatch, 120)
    # PostgreSQL: the same count. SQLite caps a statement's parameters, so Django splits the
    # bulk inserts (~50 rows each): a few more. One by one it was ~8 statements per event.
    slack = 0 if connection.vendor == "postgresql" else 120 // 20
    assert big <= small + slack, (small, big)


@pytest.mark.parametrize(
    ("case", "extra", "reason"),
    [
        # Power level 0 may not set the name (state_default 50): auth against its own auth events fails.
        ("unauthorised", lambda r: r.signed(f"@member0:{r.name}", "m.room.name", "", {"name": "x"},
                                            [r.ids["pl"], r.ids["join"]]), "is rejected: auth events"),
        ("unknown auth event", lambda r: r.signed(r.creator, "m.room.topic", "", {"topic": "x"},
                                                  [r.ids["pl"], r.ids["join"], "$" + "A" * 43]), "unknown auth events"),
    ],
)  # fmt: skip
def test_an_answer_with_an_event_failing_its_auth_events_is_refused_whole(
    keyring, monkeypatch, case, extra, reason
) -> None:
    resident = _resident(keyring, monkeypatch, "10")
    resident.add_members(3)
    bad = extra(resident)
    resident.tamper = {"state": lambda s: [*s, bad]}
    bob = make_user()
    with pytest.raises(MatrixError) as err:
        remote_membership.join_through_servers(
            user_id=bob.user_id, room_id=resident.room_id, servers=[resident.name], content={}
        )
    assert err.value.status == 502 and reason in err.value.error, err.value.error
    assert room_store.get_room(resident.room_id) is None
    assert not EventRow.objects.filter(event_id__in=list(resident.pdus)).exists()

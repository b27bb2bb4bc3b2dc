"""The federation outbox and the per-destination sender (DESIGN.md §3 step 5, STYLE.md #9).

Outbox rows are written in the event's transaction, one per destination; the sender
delivers them in order, one transaction in flight per destination, the same txnId
until a 200, backing off on failures. The network is a scripted fake here; the live
tests run two servers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.test import TestCase

from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.persist_event import persist_received_event, send_local_event
from dagcore.federation import outbox, sender
from dagcore.federation.client import FederationHttpError, FederationUnreachable
from dagcore.models import FederationOutboxEntry
from dagcore.store import outbox as outbox_store
from tests.support.events import RemoteServer
from tests.support.rooms import remote_event

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db]

ALICE = f"@alice:{settings.SERVER_NAME}"


def _room(*, federate: bool = True, version: str = "11") -> str:
    spec = RoomSpec(creator=ALICE, room_version=version, preset="public_chat", name="fed")
    if not federate:
        spec = RoomSpec(
            creator=ALICE, room_version=version, preset="public_chat", creation_content={"m.federate": False}
        )
    room_id, _ = create_room(spec)
    return room_id


def _join(room_id: str, server: RemoteServer, localpart: str = "bob") -> str:
    user = f"@{localpart}:{server.server_name}"
    persist_received_event(
        remote_event(server, room_id, user, "m.room.member", {"membership": "join"}, state_key=user)
    )
    return user


def _msg(room_id: str, body: str = "hi") -> str:
    return send_local_event(
        room_id=room_id,
        sender=ALICE,
        event_type="m.room.message",
        content={"msgtype": "m.text", "body": body},
    ).event.event_id


def _rows(event_id: str) -> list[str]:
    return sorted(
        FederationOutboxEntry.objects.filter(event__event_id=event_id).values_list("destination", flat=True)
    )


# --------------------------------------------------------------------------- the outbox


def test_a_local_event_gets_one_row_per_remote_server_in_the_room() -> None:
    room_id = _room()
    one, two = RemoteServer("one.test"), RemoteServer("two.test")
    _join(room_id, one)
    _join(room_id, two)
    _join(room_id, two, "carol")  # two members of one server: still one row
    event_id = _msg(room_id)
    assert _rows(event_id) == ["one.test", "two.test"]
    assert outbox_store.get_pending_event_ids("one.test") == [event_id]


def test_received_events_are_not_put_in_the_outbox() -> None:
    room_id = _room()
    remote = RemoteServer("one.test")
    bob = _join(room_id, remote)
    msg = remote_event(remote, room_id, bob, "m.room.message", {"msgtype": "m.text", "body": "x"})
    persist_received_event(msg)
    assert _rows(msg.event_id) == []


def test_a_join_relayed_as_the_resident_goes_to_the_other_servers_not_back_to_its_origin() -> None:
    room_id = _room()
    one, two = RemoteServer("one.test"), RemoteServer("two.test")
    _join(room_id, one)
    carol = "@carol:two.test"
    join = remote_event(two, room_id, carol, "m.room.member", {"membership": "join"}, state_key=carol)
    # As send_join persists it: one.test learns of the join only from us.
    persist_received_event(join, relayed_for="two.test")
    assert _rows(join.event_id) == ["one.test"]


def test_a_room_with_only_local_members_writes_no_rows() -> None:
    room_id = _room()
    assert _rows(_msg(room_id)) == []


def test_a_room_created_with_m_federate_false_stays_local() -> None:
    room_id = _room(federate=False)
    # Nobody remote can join such a room; an invite of a remote user would name its server.
    event_id = send_local_event(
        room_id=room_id,
        sender=ALICE,
        event_type="m.room.member",
        content={"membership": "invite"},
        state_key="@zed:one.test",
    ).event.event_id
    assert _rows(event_id) == []


def test_the_leaving_servers_members_last_event_still_reaches_it() -> None:
    room_id = _room()
    remote = RemoteServer("one.test")
    bob = _join(room_id, remote)
    kick = send_local_event(
        room_id=room_id,
        sender=ALICE,
        event_type="m.room.member",
        content={"membership": "leave"},
        state_key=bob,
    ).event.event_id
    assert _rows(kick) == ["one.test"]  # in the room before the event, not after it
    assert _rows(_msg(room_id)) == []  # and no more afterwards


def test_an_invite_of_a_remote_user_goes_to_their_server() -> None:
    room_id = _room()
    invite = send_local_event(
        room_id=room_id,
        sender=ALICE,
        event_type="m.room.member",
        content={"membership": "invite"},
        state_key="@zed:three.test",
    ).event.event_id
    assert _rows(invite) == ["three.test"]


def test_outbox_rows_are_written_in_the_events_transaction() -> None:
    room_id = _room()
    _join(room_id, RemoteServer("one.test"))
    before = FederationOutboxEntry.objects.count()

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        _msg(room_id)
        assert FederationOutboxEntry.objects.count() == before + 1
        raise Abort
    assert FederationOutboxEntry.objects.count() == before  # rolled back with the event


def test_a_failing_recorder_rolls_the_event_back(monkeypatch: pytest.MonkeyPatch) -> None:
    room_id = _room()
    _join(room_id, RemoteServer("one.test"))

    def broken(**kwargs: Any) -> list[str]:
        raise RuntimeError("disk full")

    monkeypatch.setattr(outbox_store, "add_outbox_entries_for_event", broken)
    with pytest.raises(RuntimeError):
        _msg(room_id, "lost")
    monkeypatch.undo()
    assert FederationOutboxEntry.objects.count() == 0


# --------------------------------------------------------------------------- the sender


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


class FakePeer:
    """Scripted ``put_json``: each call pops the next behaviour (default: 200 ``{"pdus": {}}``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.script: list[Callable[[], dict[str, Any]]] = []

    def put_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((destination, path, content))
        if self.script:
            return self.script.pop(0)()
        return {"pdus": {}}

    def txn_ids(self) -> list[str]:
        return [path.rsplit("/", 1)[1] for _, path, _ in self.calls]

    def event_ids(self, call: int) -> list[str]:
        return [p["content"]["body"] for p in self.calls[call][2]["pdus"]]


def _raise(exc: Exception) -> Callable[[], dict[str, Any]]:
    def go() -> dict[str, Any]:
        raise exc

    return go


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(sender, "now_ms", c)
    monkeypatch.setattr(sender, "enqueue", lambda *a, **k: None)
    # Deterministic back-off: the jitter's midpoint.
    monkeypatch.setattr(sender.random, "uniform", lambda lo, hi: (lo + hi) / 2)
    return c


@pytest.fixture
def room_with_peer() -> str:
    room_id = _room()
    _join(room_id, RemoteServer("one.test"))
    return room_id


def test_the_sender_delivers_in_order_in_transactions_of_at_most_50(
    clock: Clock, room_with_peer: str
) -> None:
    for i in range(120):
        _msg(room_with_peer, str(i))
    peer = FakePeer()
    result = sender.do_send_to_destination(destination="one.test", transport=peer)
    assert (result.sent_txns, result.sent_pdus, result.outcome) == (3, 120, "idle")
    assert [len(c[2]["pdus"]) for c in peer.calls] == [50, 50, 20]
    assert [b for i in range(3) for b in peer.event_ids(i)] == [str(i) for i in range(120)]
    assert len(set(peer.txn_ids())) == 3
    body = peer.calls[0][2]
    assert body["origin"] == settings.SERVER_NAME and body["edus"] == []
    assert outbox_store.get_pending_event_ids("one.test") == []
    state = outbox_store.get_destination("one.test")
    assert state is not None and state.last_success_ts == clock.ms and state.failures == 0


def test_a_failed_transaction_is_retried_with_the_same_txn_id_after_backing_off(
    clock: Clock, room_with_peer: str
) -> None:
    _msg(room_with_peer, "a")
    peer = FakePeer()
    peer.script = [_raise(FederationUnreachable("one.test", "connection refused"))]
    first = sender.do_send_to_destination(destination="one.test", transport=peer)
    assert first.outcome == "failed"
    state = outbox_store.get_destination("one.test")
    assert state is not None and state.failures == 1
    assert state.next_attempt_ts == clock.ms + sender.MIN_RETRY_MS
    # A new event while backing off: not sent before the back-off is over.
    _msg(room_with_peer, "b")
    assert sender.do_send_to_destination(destination="one.test", transport=peer).outcome == "backoff"
    assert len(peer.calls) == 1
    clock.ms += sender.MIN_RETRY_MS
    sender.do_send_to_destination(destination="one.test", transport=peer)
    txn_ids = peer.txn_ids()
    assert txn_ids[0] == txn_ids[1] != txn_ids[2]  # the same transaction again, then the next one
    assert peer.event_ids(1) == ["a"] and peer.event_ids(2) == ["b"]


def test_the_back_off_doubles_and_is_capped_and_a_success_resets_it(
    clock: Clock, room_with_peer: str
) -> None:
    _msg(room_with_peer)
    peer = FakePeer()
    waits = []
    for _ in range(3):
        peer.script = [_raise(FederationHttpError("one.test", 502, None))]
        sender.do_send_to_destination(destination="one.test", transport=peer)
        state = outbox_store.get_destination("one.test")
        assert state is not None
        waits.append(state.next_attempt_ts - clock.ms)
        clock.ms = state.next_attempt_ts
    assert waits == [sender.MIN_RETRY_MS, 2 * sender.MIN_RETRY_MS, 4 * sender.MIN_RETRY_MS]
    assert sender.backoff_ms(60, rand=lambda lo, hi: hi) == int(sender.MAX_RETRY_MS * 1.2)
    sender.do_send_to_destination(destination="one.test", transport=peer)
    state = outbox_store.get_destination("one.test")
    assert state is not None and (state.failures, state.next_attempt_ts, state.pending) == (0, 0, 0)


def test_jitter_spreads_the_back_off() -> None:
    assert sender.backoff_ms(1, rand=lambda lo, hi: lo) == int(sender.MIN_RETRY_MS * 0.8)
    assert sender.backoff_ms(1, rand=lambda lo, hi: hi) == int(sender.MIN_RETRY_MS * 1.2)


def test_a_429_waits_the_retry_after_it_asks_for(clock: Clock, room_with_peer: str) -> None:
    _msg(room_with_peer)
    peer = FakePeer()
    peer.script = [
        _raise(FederationHttpError("one.test", 429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 777}))
    ]
    assert sender.do_send_to_destination(destination="one.test", transport=peer).outcome == "backoff"
    state = outbox_store.get_destination("one.test")
    assert state is not None and state.next_attempt_ts == clock.ms + 777 and state.pending == 1
    clock.ms += 777
    sender.do_send_to_destination(destination="one.test", transport=peer)
    assert peer.txn_ids()[0] == peer.txn_ids()[1]
    assert outbox_store.get_pending_event_ids("one.test") == []


def test_another_4xx_dead_letters_the_transaction_and_sending_goes_on(
    clock: Clock, room_with_peer: str
) -> None:
    refused = _msg(room_with_peer, "refused")
    peer = FakePeer()
    peer.script = [_raise(FederationHttpError("one.test", 400, {"errcode": "M_BAD_JSON"}))]
    sender.do_send_to_destination(destination="one.test", transport=peer)
    _msg(room_with_peer, "next")
    sender.do_send_to_destination(destination="one.test", transport=peer)
    assert peer.event_ids(1) == ["next"]
    state = outbox_store.get_destination("one.test")
    assert state is not None and state.dead_lettered == 1 and state.pending == 0
    [dead] = outbox_store.get_dead_letters(server_name="one.test")
    assert dead.event_id == refused and "400" in dead.reason


def test_one_transaction_in_flight_per_destination_across_senders(clock: Clock, room_with_peer: str) -> None:
    _msg(room_with_peer, "a")
    peer = FakePeer()
    inner: list[sender.SendResult] = []

    def while_in_flight() -> dict[str, Any]:
        # A second sender (another worker) starts while the first one's request is on the wire.
        _msg(room_with_peer, "b")
        inner.append(sender.do_send_to_destination(destination="one.test", transport=peer, owner="other"))
        return {"pdus": {}}

    peer.script = [while_in_flight]
    result = sender.do_send_to_destination(destination="one.test", transport=peer, owner="first")
    assert inner[0].outcome == "leased" and inner[0].sent_txns == 0
    # The lease holder sends what arrived meanwhile itself, after its first 200.
    assert result.sent_pdus == 2 and [peer.event_ids(i) for i in range(2)] == [["a"], ["b"]]


def test_a_nudge_that_finds_the_lease_held_by_a_finishing_sender_is_not_lost(
    clock: Clock, room_with_peer: str, monkeypatch
) -> None:
    _msg(room_with_peer, "a")
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(sender, "enqueue", lambda *a: queued.append(a))
    claim = outbox_store.claim_transaction
    late: list[sender.SendResult] = []

    def claim_then_race(**kwargs: Any) -> outbox_store.PendingTransaction | None:
        txn = claim(**kwargs)
        if txn is None and not late:
            # The holder found nothing more to send; before it releases its lease, another
            # process commits an event, and that event's nudge finds the lease taken.
            _msg(room_with_peer, "b")
            late.append(sender.do_send_to_destination(destination="one.test", transport=peer, owner="nudge"))
        return txn

    monkeypatch.setattr(outbox_store, "claim_transaction", claim_then_race)
    peer = FakePeer()
    result = sender.do_send_to_destination(destination="one.test", transport=peer, owner="holder")
    assert (result.outcome, result.sent_pdus) == ("idle", 1) and late[0].outcome == "leased"
    # The holder saw the row after releasing its lease: it queued a sender for it.
    assert queued == [(sender.SEND_TASK, "one.test")]
    assert sender.do_send_to_destination(destination="one.test", transport=peer).sent_pdus == 1
    assert [peer.event_ids(i) for i in range(2)] == [["a"], ["b"]]
    assert outbox_store.get_pending_event_ids("one.test") == []


def test_a_sender_killed_mid_transaction_is_taken_over_with_the_same_txn_id(
    clock: Clock, room_with_peer: str
) -> None:
    _msg(room_with_peer, "a")
    # A worker took the lease and built the transaction, then died (no release, no answer).
    outbox_store.ensure_destination("one.test")
    assert outbox_store.acquire_lease(
        server_name="one.test", owner="dead", now=clock.ms, until=clock.ms + sender.LEASE_MS
    )
    txn = outbox_store.claim_transaction(server_name="one.test", limit=50, new_txn_id="crashed.1")
    assert txn is not None
    peer = FakePeer()
    assert sender.do_send_to_destination(destination="one.test", transport=peer).outcome == "leased"
    clock.ms += sender.LEASE_MS
    sender.do_send_to_destination(destination="one.test", transport=peer)
    assert peer.txn_ids() == ["crashed.1"] and peer.event_ids(0) == ["a"]
    assert outbox_store.get_pending_event_ids("one.test") == []


def test_a_peer_contacting_us_ends_its_back_off(clock: Clock, room_with_peer: str, monkeypatch) -> None:
    _msg(room_with_peer)
    peer = FakePeer()
    peer.script = [_raise(FederationUnreachable("one.test", "down"))]
    sender.do_send_to_destination(destination="one.test", transport=peer)
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(sender, "enqueue", lambda *a: queued.append(a))
    sender.note_peer_contact("one.test")
    state = outbox_store.get_destination("one.test")
    assert state is not None and (state.failures, state.next_attempt_ts) == (0, 0)
    assert queued == [(sender.SEND_TASK, "one.test")]
    sender.note_peer_contact("one.test")  # not backing off: nothing to do
    assert len(queued) == 1


def test_the_beat_rescan_queues_due_destinations_only(clock: Clock, room_with_peer: str, monkeypatch) -> None:
    two = RemoteServer("two.test")
    _join(room_with_peer, two)
    _msg(room_with_peer)
    outbox_store.ensure_destination("two.test")
    outbox_store.record_failure(
        server_name="two.test", now=clock.ms, next_attempt_ts=clock.ms + 60_000, error="x", count=True
    )
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(sender, "enqueue", lambda *a: queued.append(a))
    assert sender.do_send_pending() == ["one.test"]
    assert queued == [(sender.SEND_TASK, "one.test")]


def test_the_nudge_after_commit_queues_the_sender_of_each_destination(
    room_with_peer: str, monkeypatch
) -> None:
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(outbox, "enqueue", lambda *a: queued.append(a))
    monkeypatch.setattr(outbox, "sends_in_this_process", lambda: True)
    with TestCase.captureOnCommitCallbacks(execute=True):
        _msg(room_with_peer)
    assert queued == [(outbox.SEND_TASK, "one.test")]


def test_the_nudge_also_queues_the_senders_of_a_relayed_event(room_with_peer: str, monkeypatch) -> None:
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(outbox, "enqueue", lambda *a: queued.append(a))
    monkeypatch.setattr(outbox, "sends_in_this_process", lambda: True)
    two = RemoteServer("two.test")
    carol = "@carol:two.test"
    join = remote_event(two, room_with_peer, carol, "m.room.member", {"membership": "join"}, state_key=carol)
    with TestCase.captureOnCommitCallbacks(execute=True):
        persist_received_event(join, relayed_for="two.test")
    assert queued == [(outbox.SEND_TASK, "one.test")]


def test_tribune_without_a_broker_only_writes_rows(room_with_peer: str, monkeypatch, settings) -> None:
    settings.CELERY_BROKER_URL = None
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(outbox, "enqueue", lambda *a: queued.append(a))
    with TestCase.captureOnCommitCallbacks(execute=True):
        event_id = _msg(room_with_peer)
    assert queued == [] and _rows(event_id) == ["one.test"]


def test_embassy_start_contacts_every_peer_with_pending_rows(
    clock: Clock, room_with_peer: str, monkeypatch
) -> None:
    _msg(room_with_peer)
    peer = FakePeer()
    peer.script = [_raise(FederationUnreachable("one.test", "down"))]
    sender.do_send_to_destination(destination="one.test", transport=peer)
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(sender, "enqueue", lambda *a: queued.append(a))
    assert sender.do_contact_pending_peers() == ["one.test"]
    assert queued == [(sender.SEND_TASK, "one.test")]
    state = outbox_store.get_destination("one.test")
    assert state is not None and state.next_attempt_ts == 0  # tried at once, not after the back-off

"""``PUT /_matrix/federation/v1/send/{txnId}``: limits, bad input, per-PDU verdicts, idempotency.

Spec: server-server API "Transactions" and "Checks performed on receipt of a PDU".
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.fill_gaps import GapFiller
from dagcore.actions.persist_event import persist_received_event, send_local_event
from dagcore.models import InboundPdu, ReceivedTransaction
from dagcore.store import events as event_store
from dagcore.store.dialect import is_postgres
from embassy import http as embassy_http
from embassy import inbound
from tests.federation.inbound_support import send_txn, signed_request, trust
from tests.support.events import RemoteServer
from tests.support.rooms import current_state_ids, remote_event

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db]

ALICE = f"@alice:{settings.SERVER_NAME}"


@pytest.fixture
def remote() -> RemoteServer:
    server = RemoteServer("remote.test")
    trust(server)
    return server


@pytest.fixture
def room(remote: RemoteServer) -> tuple[str, str]:
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11", preset="public_chat"))
    bob = "@bob:remote.test"
    persist_received_event(
        remote_event(remote, room_id, bob, "m.room.member", {"membership": "join"}, state_key=bob)
    )
    return room_id, bob


def _message(remote: RemoteServer, room_id: str, sender: str, body: str = "hello", **kw: Any) -> Any:
    return remote_event(remote, room_id, sender, "m.room.message", {"msgtype": "m.text", "body": body}, **kw)


def _after(remote: RemoteServer, parent: Any, body: str) -> Any:
    """A message of the parent's sender on top of ``parent`` (not stored yet), same auth events."""
    return remote.event(
        parent.room_version,
        room_id=parent.room_id,
        sender=parent.sender,
        event_type="m.room.message",
        content={"msgtype": "m.text", "body": body},
        prev_events=[parent.event_id],
        auth_events=list(parent.auth_event_ids),
        depth=parent.pdu["depth"] + 1,
    )


def _in_timeline(event_id: str) -> bool:
    stored = event_store.get_event_by_id(event_id)
    return stored is not None and stored.stream_ordering is not None and not stored.soft_failed


def test_a_transaction_of_valid_pdus_is_persisted_and_answered_per_pdu(remote, room) -> None:
    room_id, bob = room
    first = _message(remote, room_id, bob, "one")
    status, body = send_txn(remote, "t1", [first.pdu], edus=[{"edu_type": "m.typing", "content": {}}])
    assert status == 200 and body == {"pdus": {first.event_id: {}}}
    assert _in_timeline(first.event_id)
    # The next one builds on it: the room's PDUs are processed in order.
    second = _message(remote, room_id, bob, "two")
    third = _after(remote, second, "three")
    status, body = send_txn(remote, "t2", [second.pdu, third.pdu])
    assert status == 200 and body["pdus"] == {second.event_id: {}, third.event_id: {}}
    assert _in_timeline(third.event_id)
    assert ReceivedTransaction.objects.get(origin="remote.test", txn_id="t1").edu_count == 1
    assert InboundPdu.objects.count() == 0


def test_a_retried_transaction_gets_the_same_answer_and_is_not_processed_again(remote, room) -> None:
    room_id, bob = room
    event = _message(remote, room_id, bob)
    first = send_txn(remote, "same", [event.pdu])
    other = _message(remote, room_id, bob, "different content, same txn id")
    again = send_txn(remote, "same", [other.pdu])
    assert again == first
    assert event_store.get_event_by_id(other.event_id) is None
    assert ReceivedTransaction.objects.filter(origin="remote.test", txn_id="same").count() == 1


def test_a_retry_arriving_while_the_first_attempt_is_processing_gets_its_answer(
    remote, room, monkeypatch: pytest.MonkeyPatch
) -> None:
    room_id, bob = room
    event = _message(remote, room_id, bob)
    seen: list[tuple[int, Any]] = []
    real = inbound.do_process_room

    def processing(**kwargs: Any) -> int:
        # The sender timed out and retries while we are still persisting the first attempt.
        seen.append(send_txn(remote, "slow", [event.pdu]))
        return real(**kwargs)

    monkeypatch.setattr(inbound, "do_process_room", processing)
    status, body = send_txn(remote, "slow", [event.pdu])
    assert status == 200 and body == {"pdus": {event.event_id: {}}}
    assert seen == [(200, {"pdus": {event.event_id: {}}})]
    assert event_store.get_event_by_id(event.event_id) is not None


def test_pdus_beyond_the_time_budget_are_staged_and_a_worker_persists_them_in_order(
    remote, room, monkeypatch: pytest.MonkeyPatch
) -> None:
    room_id, bob = room
    monkeypatch.setattr(inbound, "INLINE_BUDGET_S", -1.0)
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(inbound, "enqueue", lambda *a: queued.append(a))
    a = _message(remote, room_id, bob, "a")
    b = _after(remote, a, "b")
    status, body = send_txn(remote, "budget", [a.pdu, b.pdu])
    assert status == 200 and body == {"pdus": {a.event_id: {}, b.event_id: {}}}
    assert event_store.get_event_by_id(a.event_id) is None
    assert queued == [(inbound.PROCESS_TASK, room_id)]
    assert inbound.do_process_room(room_id=room_id) == 2
    assert _in_timeline(a.event_id) and _in_timeline(b.event_id)
    assert InboundPdu.objects.count() == 0


def test_a_catch_up_transaction_is_answered_once_staged_and_a_worker_persists_it_in_order(
    remote, room, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than INLINE_MAX_PDUS PDUs (a sender catching up): answered after the cheap checks
    and staging, as Synapse does, so the sender's next transaction does not wait for them."""
    room_id, bob = room
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(inbound, "enqueue", lambda *a: queued.append(a))
    chain = [_message(remote, room_id, bob, "c0")]
    for n in range(1, inbound.INLINE_MAX_PDUS + 1):
        chain.append(_after(remote, chain[-1], f"c{n}"))
    status, body = send_txn(remote, "catch-up", [e.pdu for e in chain])
    assert status == 200 and body == {"pdus": {e.event_id: {} for e in chain}}
    assert all(event_store.get_event_by_id(e.event_id) is None for e in chain)
    assert queued == [(inbound.PROCESS_TASK, room_id)]
    # The retry of the same transaction is answered from the record, staging nothing twice.
    assert send_txn(remote, "catch-up", [e.pdu for e in chain]) == (200, body)
    assert InboundPdu.objects.count() == len(chain)
    assert inbound.do_process_room(room_id=room_id) == len(chain)
    assert all(_in_timeline(e.event_id) for e in chain)
    # A live transaction (a few PDUs) is still persisted inline, with its verdicts.
    live = _after(remote, chain[-1], "live")
    assert send_txn(remote, "live", [live.pdu]) == (200, {"pdus": {live.event_id: {}}})
    assert _in_timeline(live.event_id) and InboundPdu.objects.count() == 0


def test_each_bad_pdu_gets_its_own_error_and_the_good_ones_are_kept(remote, room) -> None:
    room_id, bob = room
    good = _message(remote, room_id, bob, "good")
    forged = dict(_message(remote, room_id, bob, "forged").pdu)
    forged["signatures"] = {"remote.test": {next(iter(forged["signatures"]["remote.test"])): "AAAA"}}
    tampered_event = _message(remote, room_id, bob, "original")
    tampered = {**tampered_event.pdu, "content": {"msgtype": "m.text", "body": "changed in transit"}}
    stranger = _message(remote, room_id, "@mallory:remote.test", "not a member")
    unknown_room = {**good.pdu, "room_id": "!nowhere:remote.test"}
    status, body = send_txn(remote, "mixed", [good.pdu, forged, tampered, stranger.pdu, unknown_room])
    assert status == 200
    results = body["pdus"]
    assert results[good.event_id] == {}
    assert results[tampered_event.event_id]["error"].startswith("redacted")
    assert results[stranger.event_id]["error"].startswith("rejected")
    errors = [r["error"] for r in results.values() if r]
    assert any(e.startswith("dropped: signature") for e in errors)
    assert any("not in the room" in e for e in errors)
    assert _in_timeline(good.event_id)
    # Hash mismatch: stored, but as the redacted event the signatures cover.
    stored = event_store.get_event_by_id(tampered_event.event_id)
    assert stored is not None and stored.event.content == {}
    # Rejected: stored for the DAG's sake, never in the timeline or state.
    rejected = event_store.get_event_by_id(stranger.event_id)
    assert rejected is not None and rejected.rejected_reason and rejected.stream_ordering is None
    assert ("m.room.member", "@mallory:remote.test") not in current_state_ids(room_id)


def test_a_soft_failed_pdu_is_reported_and_kept_out_of_the_timeline(remote, room) -> None:
    room_id, bob = room
    state_before_kick = current_state_ids(room_id)
    head = sorted(
        event_store.get_events_by_ids(list(state_before_kick.values())).values(), key=lambda e: e.depth
    )
    send_local_event(
        room_id=room_id,
        sender=ALICE,
        event_type="m.room.member",
        content={"membership": "ban"},
        state_key=bob,
    )
    # Bob's message cites the state before his ban (a fork): allowed there, not by the current state.
    late = _message(remote, room_id, bob, "after my ban", state=state_before_kick, prev=[head[-1].event_id])
    status, body = send_txn(remote, "soft", [late.pdu])
    assert status == 200 and body["pdus"][late.event_id]["error"].startswith("soft-failed")
    assert not _in_timeline(late.event_id)


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"origin": "other.test", "origin_server_ts": 1, "pdus": []}, "M_BAD_JSON"),
        ({"origin": "remote.test", "origin_server_ts": 1, "pdus": [{}] * 51}, "M_BAD_JSON"),
        ({"origin": "remote.test", "origin_server_ts": 1, "pdus": [], "edus": [{}] * 101}, "M_BAD_JSON"),
        ({"origin": "remote.test", "origin_server_ts": 1.5, "pdus": []}, "M_BAD_JSON"),
        ({"origin": "remote.test", "origin_server_ts": 2**60, "pdus": []}, "M_BAD_JSON"),
        ({"origin": "remote.test", "origin_server_ts": 1, "pdus": "nope"}, "M_BAD_JSON"),
        ([], "M_NOT_JSON"),
    ],
    ids=["origin-mismatch", "51-pdus", "101-edus", "float", "int-range", "pdus-not-list", "not-object"],
)
def test_a_bad_envelope_is_400_and_stores_nothing(remote, body: Any, errcode: str) -> None:
    status, answer = signed_request(remote, "PUT", "/_matrix/federation/v1/send/bad", body)
    assert (status, answer["errcode"]) == (400, errcode)
    assert ReceivedTransaction.objects.count() == 0


def test_unparseable_json_is_400(remote) -> None:
    status, answer = signed_request(remote, "PUT", "/_matrix/federation/v1/send/x", raw=b"{not json")
    assert status == 400 and answer["errcode"] == "M_NOT_JSON"


def test_an_unsigned_transaction_is_401(remote) -> None:
    body = {"origin": "remote.test", "origin_server_ts": 1, "pdus": []}
    status, answer = signed_request(remote, "PUT", "/_matrix/federation/v1/send/u", body, sign=False)
    assert (status, answer["errcode"]) == (401, "M_UNAUTHORIZED")
    assert ReceivedTransaction.objects.count() == 0


def test_a_body_over_the_limit_is_413(remote, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embassy_http, "MAX_JSON_BODY", 1024)
    body = {"origin": "remote.test", "origin_server_ts": 1, "pdus": [], "edus": [{"pad": "x" * 2000}]}
    status, answer = signed_request(remote, "PUT", "/_matrix/federation/v1/send/big", body)
    assert (status, answer["errcode"]) == (413, "M_TOO_LARGE")
    # the permitted control: the same body under the limit is taken
    monkeypatch.setattr(embassy_http, "MAX_JSON_BODY", 16 * 1024 * 1024)
    assert signed_request(remote, "PUT", "/_matrix/federation/v1/send/big", body)[0] == 200


def test_answered_transactions_are_forgotten_after_a_day(
    remote, room, monkeypatch: pytest.MonkeyPatch
) -> None:
    room_id, bob = room
    send_txn(remote, "old", [_message(remote, room_id, bob).pdu])
    assert inbound.do_expire_received_transactions() == 0
    later = inbound.now_ms() + inbound.RECEIVED_TXN_TTL_MS + 1
    monkeypatch.setattr(inbound, "now_ms", lambda: later)
    assert inbound.do_expire_received_transactions() == 1
    assert ReceivedTransaction.objects.count() == 0


def test_checking_known_auth_events_is_one_query(remote, room, django_assert_num_queries) -> None:
    # Every inbound PDU goes through this check: its auth events are read once, not once per ID.
    room_id, bob = room
    event = _message(remote, room_id, bob)
    assert len(event.auth_event_ids) >= 3
    filler = GapFiller(origin=remote.server_name, room_id=room_id, version=event.room_version)
    with django_assert_num_queries(1):
        filler.ensure_auth_events(event)


def _staged_item(remote: RemoteServer, event: Any) -> Any:
    """The PDU as a worker claims it (``do_process_room``'s unit of work)."""
    return inbound.inbound_store.ClaimedPdu(
        0, remote.server_name, event.room_id, event.event_id, event.pdu, 0
    )


def test_processing_an_ordinary_message_pdu_takes_eight_statements(
    remote, room, django_assert_num_queries
) -> None:
    # Issue 10: each PDU read its event rows ~6 times and the room row ~3 times (17 statements
    # here before), which is what made inbound /send slower than Synapse's. Now: one read of the
    # event, its prev and auth events; then its transaction (here a savepoint pair): the room's
    # lock, its row with what is known of the event, the event's ID, the room's head, the row.
    room_id, bob = room
    first = _message(remote, room_id, bob, "warm-up")
    event = _after(remote, first, "counted")
    context = inbound.RoomContext.load(room_id)  # once per room and transaction, not per PDU
    assert context is not None
    assert inbound._process_pdu(_staged_item(remote, first), context) is None
    # SQLite (the embedded default) takes no advisory lock but writes the row, its position
    # and its edges in four statements instead of PostgreSQL's one.
    with django_assert_num_queries(8 if is_postgres() else 10):
        assert inbound._process_pdu(_staged_item(remote, event), context) is None
    assert _in_timeline(event.event_id)
    head = inbound.RoomContext.load(room_id)
    assert head is not None
    assert [e.event_id for e in event_store.get_forward_extremities(head.room)] == [event.event_id]


def test_a_pdu_whose_redaction_arrived_first_is_stored_redacted(remote, room) -> None:
    # Spec (v1.19 server-server API, "Redactions"): a redaction may arrive before its target;
    # the target is redacted when it comes (what the persisted event learns in one statement).
    room_id, bob = room
    message = _message(remote, room_id, bob, "regret")
    redaction = remote_event(remote, room_id, bob, "m.room.redaction", {"redacts": message.event_id})
    persist_received_event(redaction)
    status, body = send_txn(remote, "late", [message.pdu])
    assert status == 200 and body == {"pdus": {message.event_id: {}}}
    stored = event_store.get_event_by_id(message.event_id)
    assert stored is not None and stored.redacted_by == redaction.event_id
    assert "body" not in stored.effective_event.content

"""Sending events in-process: idempotent transactions, state, input checks, query cost."""

from __future__ import annotations

import pytest
from django.conf import settings

from dagcore.actions.send_event import check_send_event
from dagcore.actions.txns import ClientTxn
from dagcore.http.errors import MatrixError
from dagcore.store import rooms as room_store
from dagcore.store import timeline
from tests.actions.roomkit import join, make_room, make_user, say, set_state

pytestmark = pytest.mark.django_db


def _send(
    user, room_id: str, txn: str, *, device: str = "DEV", body: str = "hi", event_type: str = "m.room.message"
):
    return check_send_event(
        txn=ClientTxn(user_id=user.user_id, device_key=device, txn_id=txn),
        room_id=room_id,
        event_type=event_type,
        content={"msgtype": "m.text", "body": body},
    )


def test_the_same_transaction_answers_the_same_event_but_another_device_sends_anew() -> None:
    alice = make_user()
    room = make_room(alice)
    first = _send(alice, room, "txn1")
    again = _send(alice, room, "txn1", body="different body, same transaction")
    other_device = _send(alice, room, "txn1", device="OTHER")
    other_txn = _send(alice, room, "txn2")
    assert again == first
    assert other_device != first and other_txn != first
    room_row = room_store.get_room(room)
    assert room_row is not None
    assert timeline.count_events_by_type(room_row)["m.room.message"] == 3


def test_non_members_cannot_send_but_members_can() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, preset="public_chat")
    with pytest.raises(MatrixError) as exc:
        _send(bob, room, "t")
    assert exc.value.status == 403 and exc.value.errcode == "M_FORBIDDEN"
    join(bob, room)
    assert _send(bob, room, "t").startswith("$")


def test_unknown_rooms_answer_as_rooms_you_are_not_in() -> None:
    # No probing for room IDs: an unknown room and a room you are not in look the same.
    alice, bob = make_user(), make_user()
    with pytest.raises(MatrixError) as exc:
        _send(alice, "!nope:test.dagma.local", "t")
    assert (exc.value.status, exc.value.errcode) == (403, "M_FORBIDDEN")
    with pytest.raises(MatrixError) as closed:
        _send(bob, make_room(alice), "t")
    assert (closed.value.status, closed.value.errcode) == (403, "M_FORBIDDEN")


def test_floats_are_refused_in_v6_plus_rooms_while_integers_pass() -> None:
    alice = make_user()
    room = make_room(alice)
    with pytest.raises(MatrixError) as exc:
        check_send_event(
            txn=ClientTxn(user_id=alice.user_id, device_key="D", txn_id="a"),
            room_id=room,
            event_type="m.x",
            content={"n": 1.5},
        )
    assert exc.value.status == 400
    assert check_send_event(
        txn=ClientTxn(user_id=alice.user_id, device_key="D", txn_id="b"),
        room_id=room,
        event_type="m.x",
        content={"n": 1},
    )


def test_oversized_content_is_413_and_changes_nothing() -> None:
    alice = make_user()
    room = make_room(alice)
    with pytest.raises(MatrixError) as exc:
        _send(alice, room, "big", body="x" * 70_000)
    assert exc.value.status == 413
    assert say(alice, room, "x" * 1000)


def test_resending_identical_state_returns_the_current_event() -> None:
    alice = make_user()
    room = make_room(alice)
    first = set_state(alice, room, "m.room.topic", {"topic": "t"})
    assert set_state(alice, room, "m.room.topic", {"topic": "t"}) == first
    assert set_state(alice, room, "m.room.topic", {"topic": "u"}) != first


def test_state_key_of_another_user_is_refused_in_v11_while_ones_own_passes() -> None:
    alice, bob = make_user(), make_user()
    room = make_room(alice, room_version="11")
    with pytest.raises(MatrixError) as exc:
        set_state(alice, room, "org.example.profile", {"x": 1}, state_key=bob.user_id)
    assert exc.value.status == 403
    assert set_state(alice, room, "org.example.profile", {"x": 1}, state_key=alice.user_id)


def test_canonical_alias_must_point_at_the_room() -> None:
    alice = make_user()
    room = make_room(alice, room_alias_name="canon-ok")
    make_room(alice, room_alias_name="canon-other")
    with pytest.raises(MatrixError) as exc:
        set_state(alice, room, "m.room.canonical_alias", {"alias": f"#canon-other:{settings.SERVER_NAME}"})
    assert exc.value.errcode == "M_BAD_ALIAS"
    assert set_state(
        alice,
        room,
        "m.room.canonical_alias",
        {"alias": f"#canon-ok:{settings.SERVER_NAME}", "alt_aliases": []},
    )


def test_sending_costs_the_same_queries_in_a_big_room_as_in_a_small_one(
    django_assert_max_num_queries,
) -> None:
    alice = make_user()
    small = make_room(alice, preset="public_chat")
    big = make_room(alice, preset="public_chat")
    for _ in range(40):
        join(make_user(), big)
    for i in range(40):
        say(alice, big, f"filler {i}")
    for room in (small, big):
        say(alice, room, "warm-up")
        # The transaction lookup, then one transaction: room lock and row, extremities, auth
        # state, the event with its edges, the transaction record, extremities, stream position
        # (plus the savepoint pair of the test's own transaction), and the federation outbox
        # recorder's one INSERT ... SELECT.
        with django_assert_max_num_queries(10):
            _send(alice, room, f"bounded-{room}")


@pytest.mark.sqlite
def test_a_concurrent_request_of_the_same_transaction_answers_the_first_event_and_adds_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two requests of one transaction racing: the later one's record of the transaction meets
    the first one's, so its event is rolled back and it answers the event the first one sent."""
    from dagcore.store import txns as txn_store

    alice = make_user()
    room = make_room(alice)
    first = _send(alice, room, "raced")
    room_row = room_store.get_room(room)
    assert room_row is not None
    before = timeline.count_events_by_type(room_row)["m.room.message"]
    # As if the first request had not committed yet when the second one looked.
    real_lookup = txn_store.get_txn_event_id
    calls = []

    def lookup(**kw: str) -> str | None:
        calls.append(kw)
        return None if len(calls) == 1 else real_lookup(**kw)

    monkeypatch.setattr(txn_store, "get_txn_event_id", lookup)
    assert _send(alice, room, "raced", body="the retry") == first
    assert timeline.count_events_by_type(room_row)["m.room.message"] == before
    assert len(calls) == 2

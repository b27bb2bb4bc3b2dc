"""The pipeline's one after-commit seam: subscribers hear of committed events only, each once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import transaction

from dagcore import events_persisted
from dagcore.actions.create_room import RoomSpec, create_room
from dagcore.actions.persist_event import send_local_event
from dagcore.events_persisted import EventsPersisted
from dagcore.models import Event as EventRow
from dagcore.store import events as event_store

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db(transaction=True)]

ALICE = f"@alice:{settings.SERVER_NAME}"


@pytest.fixture
def heard() -> Iterator[list[EventsPersisted]]:
    batches: list[EventsPersisted] = []
    events_persisted.subscribe("test", batches.append)
    yield batches
    events_persisted.unsubscribe("test")


def _say(room_id: str, body: str = "hi") -> str:
    return send_local_event(
        room_id=room_id,
        sender=ALICE,
        event_type="m.room.message",
        content={"msgtype": "m.text", "body": body},
    ).event.event_id


def test_a_committed_event_is_announced_once_with_its_room_position_and_origin(
    heard: list[EventsPersisted],
) -> None:
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11"))
    heard.clear()
    event_id = _say(room_id)
    assert len(heard) == 1
    (batch,) = heard
    stored = event_store.get_event_by_id(event_id)
    assert stored is not None
    assert batch.room_id == room_id and batch.room_nid == stored.room_nid and batch.local is True
    assert [(e.event_id, e.type, e.sender) for e in batch.events] == [(event_id, "m.room.message", ALICE)]
    assert batch.max_stream_ordering == stored.stream_ordering


def test_subscribers_hear_nothing_before_commit_and_nothing_of_a_rollback(
    heard: list[EventsPersisted],
) -> None:
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11"))
    heard.clear()

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        rolled_back = _say(room_id, "never committed")
        assert heard == []  # inside the transaction: not yet
        raise Abort
    assert heard == [] and event_store.get_event_by_id(rolled_back) is None
    with transaction.atomic():
        kept = _say(room_id, "committed")
        assert heard == []
    assert [e.event_id for b in heard for e in b.events] == [kept]


def test_a_failing_subscriber_costs_the_others_nothing_and_the_event_stays(
    heard: list[EventsPersisted],
) -> None:
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11"))

    def broken(_: EventsPersisted) -> None:
        raise RuntimeError("subscriber bug")

    events_persisted.subscribe("broken", broken)
    try:
        heard.clear()
        event_id = _say(room_id)
    finally:
        events_persisted.unsubscribe("broken")
    assert [e.event_id for b in heard for e in b.events] == [event_id]
    assert event_store.get_event_by_id(event_id) is not None


def test_every_process_subscribes_sync_and_push() -> None:
    # Registered by the dagcore app itself, so management commands and workers nudge too.
    assert {"sync", "push"} <= set(events_persisted.subscriber_names())


def test_a_recorder_writes_in_the_events_transaction_and_its_failure_rolls_the_event_back() -> None:
    room_id, _ = create_room(RoomSpec(creator=ALICE, room_version="11"))
    seen_in_transaction: list[bool] = []

    def recorder(batch: EventsPersisted) -> None:
        seen_in_transaction.append(transaction.get_connection().in_atomic_block)
        if batch.events[0].type == "m.test.refused":
            raise RuntimeError("the recorder could not write its row")

    events_persisted.record_with("test", recorder)
    try:
        _say(room_id)
        with pytest.raises(RuntimeError):
            send_local_event(room_id=room_id, sender=ALICE, event_type="m.test.refused", content={})
    finally:
        events_persisted.stop_recording("test")
    assert seen_in_transaction == [True, True]
    assert not EventRow.objects.filter(type="m.test.refused").exists()
    assert EventRow.objects.filter(type="m.room.message").count() == 1
